package search

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fhirgate/fhirgate/fhir/fhirpath"
)

// Number and quantity values (search.html#number, search.html#quantity)
// with their implicit precision ranges.

// NumberRange parses a FHIR decimal and returns its value and the range
// [lo, hi) its precision implies (search.html#number): "100" -> [99.5,
// 100.5), "100.00" -> [99.995, 100.005). Exponent forms count the decimal
// places of their plain expansion ("1e2" is 100, [99.5, 100.5); "1.5e-3" is
// 0.0015, [0.00145, 0.00155)).
func NumberRange(s string) (v, lo, hi float64, err error) {
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant = s[:i]
		e, err := strconv.Atoi(strings.TrimPrefix(s[i+1:], "+"))
		if err != nil {
			return 0, 0, 0, fmt.Errorf("invalid number %q", s)
		}
		exp = e
	}
	digits := strings.TrimLeft(mant, "+-")
	whole, frac, _ := strings.Cut(digits, ".")
	if whole == "" && frac == "" || strings.Trim(whole+frac, "0123456789") != "" || strings.Count(mant, "-")+strings.Count(mant, "+") > 1 {
		return 0, 0, 0, fmt.Errorf("invalid number %q", s)
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, 0, 0, fmt.Errorf("invalid number %q", s)
	}
	decimals := max(len(frac)-exp, 0)
	half := 0.5 * math.Pow10(-decimals)
	return v, v - half, v + half, nil
}

func numberString(v any) (string, bool) {
	switch n := v.(type) {
	case json.Number:
		return string(n), true
	case float64:
		return strconv.FormatFloat(n, 'f', -1, 64), true
	}
	return "", false
}

// numValues indexes search.html#number values (and a Range as its bounds).
func (x *extractor) numValues(ix *Index, code string, it fhirpath.Item, kind string) {
	switch kind {
	case "integer", "decimal":
		if s, ok := numberString(it.V); ok {
			v, lo, hi, err := NumberRange(s)
			if err != nil {
				x.warnf("%v", err)
				return
			}
			ix.Num = append(ix.Num, NumValue{Param: code, Value: v, Lo: lo, Hi: hi})
			return
		}
	case "Range":
		if m, ok := it.V.(map[string]any); ok {
			if q, ok := x.rangeQty(code, m); ok {
				ix.Num = append(ix.Num, NumValue{Param: code, Value: q.Value, Lo: q.Lo, Hi: q.Hi})
			}
			return
		}
	case "Quantity":
		if m, ok := it.V.(map[string]any); ok {
			if q, ok := x.qty(code, m); ok {
				ix.Num = append(ix.Num, NumValue{Param: code, Value: q.Value, Lo: q.Lo, Hi: q.Hi})
			}
			return
		}
	}
	x.warnf("%s is not a number", describe(it, kind))
}

// qtyValues indexes search.html#quantity values: Quantity (and its
// profiles Age, Duration, ...), Money (currency as code) and Range.
func (x *extractor) qtyValues(ix *Index, code string, it fhirpath.Item, kind string) {
	m, _ := it.V.(map[string]any)
	switch kind {
	case "Quantity":
		if m != nil {
			if q, ok := x.qty(code, m); ok {
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "Money":
		if m != nil {
			if q, ok := x.qty(code, m); ok {
				q.System, q.Code, q.Unit = "", str(m, "currency"), ""
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "Range":
		if m != nil {
			if q, ok := x.rangeQty(code, m); ok {
				ix.Qty = append(ix.Qty, q)
			}
			return
		}
	case "SampledData":
		return // no single value to compare
	}
	x.warnf("%s is not a quantity", describe(it, kind))
}

func (x *extractor) qty(code string, m map[string]any) (QtyValue, bool) {
	s, ok := numberString(m["value"])
	if !ok {
		return QtyValue{}, false
	}
	v, lo, hi, err := NumberRange(s)
	if err != nil {
		x.warnf("%v", err)
		return QtyValue{}, false
	}
	q := QtyValue{Param: code, Value: v, Lo: lo, Hi: hi, System: str(m, "system"), Code: str(m, "code"), Unit: str(m, "unit")}
	// Comparators widen the range: "<5" is anything below 5.
	switch str(m, "comparator") {
	case "<", "<=":
		q.Lo = -math.MaxFloat64
	case ">", ">=":
		q.Hi = math.MaxFloat64
	}
	return q, true
}

// rangeQty turns a Range into one value spanning [low, high] (an open side
// is unbounded); V is the low value (or the high one).
func (x *extractor) rangeQty(code string, m map[string]any) (QtyValue, bool) {
	low, _ := m["low"].(map[string]any)
	high, _ := m["high"].(map[string]any)
	lq, lok := x.qty(code, low)
	hq, hok := x.qty(code, high)
	switch {
	case lok && hok:
		lq.Hi = hq.Hi
		return lq, true
	case lok:
		lq.Hi = math.MaxFloat64
		return lq, true
	case hok:
		hq.Lo = -math.MaxFloat64
		return hq, true
	}
	return QtyValue{}, false
}
