package search

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Date values (search.html#date): the range each date, dateTime,
// instant, Period and Timing covers.

// FarPast and FarFuture bound open Period ends (search.html#date: a Period
// without start began before any date, one without end has not ended).
// They stay within the years 0001-9999 so they survive JSON and BSON.
var (
	FarPast   = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	FarFuture = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC)
)

// dateValues indexes search.html#date values as ranges.
func (x *extractor) dateValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "date", "dateTime", "instant", "string":
		if s, ok := it.V.(string); ok {
			lo, hi, err := ParseDateRange(s)
			if err != nil {
				x.warnf("%v", err)
				return
			}
			addDate(ix, DateValue{Param: code, Lo: lo, Hi: hi})
			return
		}
	case "Period":
		if m != nil {
			x.period(ix, code, m)
			return
		}
	case "Timing":
		if m != nil {
			for _, e := range strs(m, "event") {
				if lo, hi, err := ParseDateRange(e); err == nil {
					addDate(ix, DateValue{Param: code, Lo: lo, Hi: hi})
				} else {
					x.warnf("%v", err)
				}
			}
			if rep, ok := m["repeat"].(map[string]any); ok {
				if bp, ok := rep["boundsPeriod"].(map[string]any); ok {
					x.period(ix, code, bp)
				}
			}
			return
		}
	}
	x.warnf("%s is not a date", describe(it, kind))
}

func (x *extractor) period(ix *Index, code string, m map[string]any) {
	start, end := str(m, "start"), str(m, "end")
	if start == "" && end == "" {
		return
	}
	v := DateValue{Param: code, Lo: FarPast, Hi: FarFuture}
	if start != "" {
		lo, _, err := ParseDateRange(start)
		if err != nil {
			x.warnf("Period.start: %v", err)
			return
		}
		v.Lo = lo
	}
	if end != "" {
		_, hi, err := ParseDateRange(end)
		if err != nil {
			x.warnf("Period.end: %v", err)
			return
		}
		v.Hi = hi
	}
	addDate(ix, v)
}

func addDate(ix *Index, v DateValue) {
	for i := len(ix.Date) - 1; i >= max(0, len(ix.Date)-dedupeWindow) && ix.Date[i].Param == v.Param; i-- {
		if ix.Date[i].Lo.Equal(v.Lo) && ix.Date[i].Hi.Equal(v.Hi) {
			return
		}
	}
	ix.Date = append(ix.Date, v)
}

// ParseDateRange parses a FHIR date, dateTime or instant (datatypes.html#
// dateTime, also the partial forms search values use) into the range
// [lo, hi) its precision covers (search.html#date): "2024" is the whole
// year, "2024-03" the month, "2024-03-05" the day, "2024-03-05T10:00" the
// minute, "…:30" the second and "…:30.25" the hundredth. Values without a
// time zone are taken as UTC. Sub-millisecond precision is widened to a
// millisecond, the resolution of BSON dates.
func ParseDateRange(s string) (lo, hi time.Time, err error) {
	bad := func() (time.Time, time.Time, error) {
		return time.Time{}, time.Time{}, fmt.Errorf("invalid date %q", s)
	}
	num := func(t string) (int, bool) {
		n := 0
		if t == "" {
			return 0, false
		}
		for i := 0; i < len(t); i++ {
			if t[i] < '0' || t[i] > '9' {
				return 0, false
			}
			n = n*10 + int(t[i]-'0')
		}
		return n, true
	}
	datePart, timePart, hasTime := strings.Cut(s, "T")
	if len(datePart) != 4 && len(datePart) != 7 && len(datePart) != 10 {
		return bad()
	}
	year, ok := num(datePart[:4])
	if !ok || year < 1 {
		return bad()
	}
	month, day := 1, 1
	if len(datePart) >= 7 {
		if datePart[4] != '-' {
			return bad()
		}
		if month, ok = num(datePart[5:7]); !ok || month < 1 || month > 12 {
			return bad()
		}
	}
	if len(datePart) == 10 {
		if datePart[7] != '-' {
			return bad()
		}
		if day, ok = num(datePart[8:10]); !ok || day < 1 || day > daysIn(year, time.Month(month)) {
			return bad()
		}
	}
	if !hasTime {
		lo = time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
		switch len(datePart) {
		case 4:
			return lo, lo.AddDate(1, 0, 0), nil
		case 7:
			return lo, lo.AddDate(0, 1, 0), nil
		}
		return lo, lo.AddDate(0, 0, 1), nil
	}
	if len(datePart) != 10 {
		return bad()
	}
	loc := time.UTC
	clock := timePart
	if strings.HasSuffix(clock, "Z") {
		clock = clock[:len(clock)-1]
	} else if i := strings.LastIndexAny(clock, "+-"); i >= 0 {
		tz := clock[i+1:]
		clock = clock[:i]
		if len(tz) != 5 || tz[2] != ':' {
			return bad()
		}
		h, ok1 := num(tz[:2])
		mi, ok2 := num(tz[3:])
		if !ok1 || !ok2 || h > 14 || mi > 59 {
			return bad()
		}
		off := h*3600 + mi*60
		if timePart[i] == '-' {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	if len(clock) < 5 || clock[2] != ':' {
		return bad()
	}
	hour, ok1 := num(clock[:2])
	minute, ok2 := num(clock[3:5])
	if !ok1 || !ok2 || hour > 23 || minute > 59 {
		return bad()
	}
	sec, nsec := 0, 0
	step := time.Minute
	if len(clock) > 5 {
		if clock[5] != ':' || len(clock) < 8 {
			return bad()
		}
		if sec, ok = num(clock[6:8]); !ok || sec > 60 {
			return bad()
		}
		step = time.Second
		if len(clock) > 8 {
			frac := clock[9:]
			if clock[8] != '.' || frac == "" {
				return bad()
			}
			if _, ok := num(frac); !ok {
				return bad()
			}
			if len(frac) > 9 {
				frac = frac[:9]
			}
			n, _ := num(frac + strings.Repeat("0", 9-len(frac)))
			nsec = n
			step = time.Duration(math.Pow10(9 - len(frac)))
			if step < time.Millisecond {
				step = time.Millisecond
				nsec -= nsec % int(time.Millisecond)
			}
		}
	}
	lo = time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc).UTC()
	return lo, lo.Add(step), nil
}

func daysIn(year int, m time.Month) int {
	return time.Date(year, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
