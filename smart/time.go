package smart

import (
	"fmt"
	"time"
)

// parseFHIRTime parses a FHIR date or dateTime (datatypes.html#dateTime)
// into the range it denotes: lo inclusive, hi exclusive ("2024" is the
// whole year). Values without a time zone are taken in loc (UTC if nil).
func parseFHIRTime(s string, loc *time.Location) (lo, hi time.Time, err error) {
	if loc == nil {
		loc = time.UTC
	}
	switch len(s) {
	case 4:
		t, err := time.ParseInLocation("2006", s, loc)
		return t, t.AddDate(1, 0, 0), err
	case 7:
		t, err := time.ParseInLocation("2006-01", s, loc)
		return t, t.AddDate(0, 1, 0), err
	case 10:
		t, err := time.ParseInLocation("2006-01-02", s, loc)
		return t, t.AddDate(0, 0, 1), err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("%q is not a FHIR date or dateTime", s)
	}
	// Seconds precision (fractions are rare in periods): the instant itself.
	return t, t.Add(time.Nanosecond), nil
}
