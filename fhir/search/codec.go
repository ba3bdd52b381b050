package search

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"time"
)

// The compact binary form of an Index that stores keep beside each
// version (store/sqlite's ver.idx, store/mongo's ixb): uvarint lengths,
// strings as bytes, floats as IEEE bits, times as Unix seconds and
// nanoseconds. bson / encoding/json of an Index go through reflection and
// cost several times more on every read. One format, one implementation.

// ErrIndexSortType is AppendIndex's error for a Sort value of a Go type
// the format cannot give back (the extractor writes strings, float64 and
// time.Time, which have tags of their own; nil, bool, []any and
// map[string]any are stored as JSON).
var ErrIndexSortType = errors.New("search: index sort value of an unknown type")

// AppendIndex appends the binary form of x to dst.
func AppendIndex(dst []byte, x *Index) ([]byte, error) {
	w := &writer{b: dst}
	if !w.index(x) {
		return nil, ErrIndexSortType
	}
	return w.b, nil
}

// DecodeIndex decodes what AppendIndex wrote.
func DecodeIndex(b []byte) (Index, error) {
	var x Index
	r := &reader{b: b}
	r.index(&x)
	if r.err != nil {
		return Index{}, r.err
	}
	return x, nil
}

type writer struct{ b []byte }

func (w *writer) n(n int)       { w.b = binary.AppendUvarint(w.b, uint64(n)) }
func (w *writer) s(s string)    { w.n(len(s)); w.b = append(w.b, s...) }
func (w *writer) f(f float64)   { w.b = binary.LittleEndian.AppendUint64(w.b, math.Float64bits(f)) }
func (w *writer) t(t time.Time) { w.b = binary.AppendVarint(w.b, t.Unix()); w.n(t.Nanosecond()) }
func (w *writer) ss(xs []string) {
	w.n(len(xs))
	for _, x := range xs {
		w.s(x)
	}
}

func (w *writer) index(x *Index) bool {
	w.n(len(x.Str))
	for _, v := range x.Str {
		w.s(v.Param)
		w.s(v.Value)
		w.s(v.Exact)
	}
	w.n(len(x.Tok))
	for _, v := range x.Tok {
		w.s(v.Param)
		w.s(v.System)
		w.s(v.Code)
		w.s(v.Text)
		w.s(v.TypeSystem)
		w.s(v.TypeCode)
	}
	w.n(len(x.Ref))
	for _, v := range x.Ref {
		w.s(v.Param)
		w.s(v.Ref)
		w.s(v.Type)
		w.s(v.ID)
		w.s(v.Version)
		w.s(v.IDSystem)
		w.s(v.IDValue)
	}
	w.n(len(x.Date))
	for _, v := range x.Date {
		w.s(v.Param)
		w.t(v.Lo)
		w.t(v.Hi)
	}
	w.n(len(x.Num))
	for _, v := range x.Num {
		w.s(v.Param)
		w.f(v.Value)
		w.f(v.Lo)
		w.f(v.Hi)
	}
	w.n(len(x.Qty))
	for _, v := range x.Qty {
		w.s(v.Param)
		w.f(v.Value)
		w.f(v.Lo)
		w.f(v.Hi)
		w.s(v.System)
		w.s(v.Code)
		w.s(v.Unit)
	}
	w.n(len(x.URI))
	for _, v := range x.URI {
		w.s(v.Param)
		w.s(v.Value)
	}
	w.n(len(x.Comp))
	for i := range x.Comp {
		w.s(x.Comp[i].Param)
		if !w.index(&x.Comp[i].Parts) {
			return false
		}
	}
	w.ss(x.Has)
	w.ss(x.Compartments)
	w.ss(x.Security)
	if x.Sort == nil {
		w.n(0)
		return true
	}
	w.n(len(x.Sort) + 1) // 0: nil map
	for k, v := range x.Sort {
		w.s(k)
		switch v := v.(type) {
		case string:
			w.b = append(w.b, 's')
			w.s(v)
		case float64:
			w.b = append(w.b, 'f')
			w.f(v)
		case time.Time:
			w.b = append(w.b, 't')
			w.t(v)
		case nil, bool, []any, map[string]any:
			// JSON values (what a custom value may hold), as JSON: they
			// decode to the same Go values.
			j, err := json.Marshal(v)
			if err != nil {
				return false
			}
			w.b = append(w.b, 'j')
			w.s(string(j))
		default:
			return false // a Go type JSON would not give back
		}
	}
	return true
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = errors.New("search: truncated index")
	}
	r.b = nil
}

// n reads a count or a length (bounded by what is left, so a corrupt
// binary cannot make a huge allocation).
func (r *reader) n() int {
	v, k := binary.Uvarint(r.b)
	if k <= 0 || v > uint64(len(r.b))*8+64 {
		r.fail()
		return 0
	}
	r.b = r.b[k:]
	return int(v)
}

func (r *reader) s() string {
	n := r.n()
	if n > len(r.b) {
		r.fail()
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) f() float64 {
	if len(r.b) < 8 {
		r.fail()
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) t() time.Time {
	sec, k := binary.Varint(r.b)
	if k <= 0 {
		r.fail()
		return time.Time{}
	}
	r.b = r.b[k:]
	ns, k := binary.Uvarint(r.b)
	if k <= 0 || ns >= 1e9 {
		r.fail()
		return time.Time{}
	}
	r.b = r.b[k:]
	return time.Unix(sec, int64(ns)).UTC()
}

func (r *reader) ss() []string {
	n := r.n()
	if n == 0 {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = r.s()
	}
	return out
}

func (r *reader) index(x *Index) {
	if n := r.n(); n > 0 {
		x.Str = make([]StrValue, n)
		for i := range x.Str {
			x.Str[i] = StrValue{Param: r.s(), Value: r.s(), Exact: r.s()}
		}
	}
	if n := r.n(); n > 0 {
		x.Tok = make([]TokValue, n)
		for i := range x.Tok {
			x.Tok[i] = TokValue{Param: r.s(), System: r.s(), Code: r.s(), Text: r.s(), TypeSystem: r.s(), TypeCode: r.s()}
		}
	}
	if n := r.n(); n > 0 {
		x.Ref = make([]RefValue, n)
		for i := range x.Ref {
			x.Ref[i] = RefValue{Param: r.s(), Ref: r.s(), Type: r.s(), ID: r.s(), Version: r.s(), IDSystem: r.s(), IDValue: r.s()}
		}
	}
	if n := r.n(); n > 0 {
		x.Date = make([]DateValue, n)
		for i := range x.Date {
			x.Date[i] = DateValue{Param: r.s(), Lo: r.t(), Hi: r.t()}
		}
	}
	if n := r.n(); n > 0 {
		x.Num = make([]NumValue, n)
		for i := range x.Num {
			x.Num[i] = NumValue{Param: r.s(), Value: r.f(), Lo: r.f(), Hi: r.f()}
		}
	}
	if n := r.n(); n > 0 {
		x.Qty = make([]QtyValue, n)
		for i := range x.Qty {
			x.Qty[i] = QtyValue{Param: r.s(), Value: r.f(), Lo: r.f(), Hi: r.f(), System: r.s(), Code: r.s(), Unit: r.s()}
		}
	}
	if n := r.n(); n > 0 {
		x.URI = make([]URIValue, n)
		for i := range x.URI {
			x.URI[i] = URIValue{Param: r.s(), Value: r.s()}
		}
	}
	if n := r.n(); n > 0 && r.err == nil {
		x.Comp = make([]CompValue, n)
		for i := range x.Comp {
			x.Comp[i].Param = r.s()
			r.index(&x.Comp[i].Parts)
		}
	}
	x.Has = r.ss()
	x.Compartments = r.ss()
	x.Security = r.ss()
	if n := r.n(); n > 0 && r.err == nil {
		x.Sort = make(map[string]any, n-1)
		for i := 0; i < n-1 && r.err == nil; i++ {
			k := r.s()
			if len(r.b) == 0 {
				r.fail()
				break
			}
			tag := r.b[0]
			r.b = r.b[1:]
			switch tag {
			case 's':
				x.Sort[k] = r.s()
			case 'f':
				x.Sort[k] = r.f()
			case 't':
				x.Sort[k] = r.t()
			case 'j':
				var v any
				if err := json.Unmarshal([]byte(r.s()), &v); err != nil {
					r.fail()
				}
				x.Sort[k] = v
			default:
				r.fail()
			}
		}
	}
}
