// Package conds holds the records and search conditions of the
// differential tests that check every query compiler against the one
// in-memory matcher (search.Match): store/sqlite's SQL, store/mongo's
// MongoDB filters (and lungo's second opinion on them). Hand-built records
// carry the edge values where the rules differ, ExampleRecords the search
// values of every vendored official example, and Gen builds conditions of
// every kind and prefix (search.html#ptypes, #prefix) from records' values
// (hits) and variations of them (misses near the boundaries).
package conds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

// root is the repository root (the vendored examples live under it).
var root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}()

// NewGen is a Gen with a deterministic random source.
func NewGen(seed1, seed2 uint64) *Gen {
	return &Gen{Rnd: rand.New(rand.NewPCG(seed1, seed2)), Conds: map[string][]search.Expr{}, seen: map[string]bool{}}
}

var Prefixes = []search.Prefix{"", search.Eq, search.Ne, search.Gt, search.Lt, search.Ge, search.Le, search.Sa, search.Eb, search.Ap}

// EdgeRecords are hand-built versions with the values where the rules
// differ: absent ("") fields, exact strings with and without X, words of
// token text, sub-millisecond instants, open ranges, unit text, canonical
// versions, identifiers without a system, nested paths.
func EdgeRecords() []store.Record {
	at := time.Date(2020, 1, 15, 10, 30, 0, 500_400_000, time.UTC) // .5004 s
	rec := func(typ, id string, lu time.Time, x search.Index) store.Record {
		return store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: lu, Index: x}
	}
	a := rec("Observation", "edge-a", at, search.Index{
		Str: []search.StrValue{{Param: "name", Value: ""}, {Param: "name", Value: "o'neil smith", Exact: "O'Neil Smith"}, {Param: "_text", Value: "a b.c*d"}},
		Tok: []search.TokValue{
			{Param: "code", Code: "abc"},                // no system
			{Param: "code", System: "http://loinc.org"}, // no code
			{Param: "code", System: "urn:x", Code: "ABC", Text: "heart rate panel"},
			{Param: "identifier", System: "urn:mrn", Code: "1", TypeSystem: "http://terminology.hl7.org/CodeSystem/v2-0203", TypeCode: "MR"},
			{Param: "identifier", Code: "2", TypeCode: "MR"}, // type code without system
			{Param: "status", Text: "final"},                 // text only
		},
		Ref: []search.RefValue{
			{Param: "subject", Ref: "Patient/p1", Type: "Patient", ID: "p1"},
			{Param: "subject", Ref: "Group/p1", Type: "Group", ID: "p1"},
			{Param: "performer", IDValue: "999"}, // identifier without system
			{Param: "performer", IDSystem: "urn:npi", IDValue: "999"},
			{Param: "performer", IDSystem: "urn:npi"}, // system only
			{Param: "based-on", Ref: "http://other.org/fhir/ServiceRequest/7"},
			{Param: "instantiates", Ref: "http://hl7.org/fhir/ig/core/StructureDefinition/x", Version: "4.0.1"},
			{Param: "instantiates", Ref: "http://hl7.org/fhir/ig/core/StructureDefinition/x"},
		},
		Date: []search.DateValue{
			{Param: "date", Lo: at, Hi: at.Add(time.Millisecond / 2)},
			{Param: "date", Lo: day("2020-01-01"), Hi: day("2020-02-01")},
			{Param: "issued", Lo: time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), Hi: day("2000-01-01")},            // open start
			{Param: "effective", Lo: day("2019-12-31"), Hi: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)}, // open end
		},
		Num: []search.NumValue{{Param: "probability", Value: 0.5, Lo: 0.45, Hi: 0.55}, {Param: "probability", Value: -3, Lo: -3.5, Hi: -2.5}, {Param: "probability", Value: 0, Lo: -0.5, Hi: 0.5}},
		Qty: []search.QtyValue{
			{Param: "value-quantity", Value: 5.4, Lo: 5.35, Hi: 5.45, System: "http://unitsofmeasure.org", Code: "mmol/L", Unit: "mmol/l"},
			{Param: "value-quantity", Value: 100, Lo: 99.5, Hi: 100.5, Unit: "mg"},         // unit text only
			{Param: "value-quantity", Value: 7, Lo: -math.MaxFloat64, Hi: 7.5, Code: "kg"}, // code only, "<7"
			{Param: "value-quantity", Value: 1e-3, Lo: 0.00095, Hi: 0.00105, System: "urn:iso:std:iso:4217", Code: "EUR"},
		},
		URI: []search.URIValue{
			{Param: "url", Value: "http://acme.org/fhir/ValueSet/123"},
			{Param: "url", Value: "http://acme.org/fhir/"},
			{Param: "url", Value: "urn:oid:1.2.3"},
			{Param: "url", Value: ""},
		},
		Comp: []search.CompValue{
			{Param: "code-value-quantity", Parts: search.Index{
				Tok: []search.TokValue{{Param: "0", System: "http://loinc.org", Code: "8480-6"}, {Param: "0", System: "http://snomed.info/sct", Code: "271649006"}},
				Qty: []search.QtyValue{{Param: "1", Value: 120, Lo: 119.5, Hi: 120.5, System: "http://unitsofmeasure.org", Code: "mm[Hg]"}},
			}},
			{Param: "code-value-quantity", Parts: search.Index{
				Tok: []search.TokValue{{Param: "0", System: "http://loinc.org", Code: "8462-4"}},
				Qty: []search.QtyValue{{Param: "1", Value: 80, Lo: 79.5, Hi: 80.5, System: "http://unitsofmeasure.org", Code: "mm[Hg]"}},
			}},
			{Param: "code-value-date", Parts: search.Index{
				Tok:  []search.TokValue{{Param: "0", Code: "x"}},
				Date: []search.DateValue{{Param: "1", Lo: day("2020-01-01"), Hi: day("2020-01-02")}},
				Str:  []search.StrValue{{Param: "2", Value: "abc"}},
				Ref:  []search.RefValue{{Param: "3", Ref: "Patient/p1", Type: "Patient", ID: "p1"}},
				URI:  []search.URIValue{{Param: "4", Value: "http://a.org/b"}},
				Num:  []search.NumValue{{Param: "5", Value: 2, Lo: 1.5, Hi: 2.5}},
			}},
		},
		Has:          []string{"name", "code", "identifier", "status", "subject", "performer", "based-on", "instantiates", "date", "issued", "effective", "probability", "value-quantity", "url", "code-value-quantity", "code-value-date"},
		Compartments: []string{"Patient/p1", "Practitioner/x"},
		Security:     []string{"http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R", "urn:x|"},
	})
	a.Release = store.Release{Patient: at.Add(48 * time.Hour), Proxy: store.Never}
	b := rec("Patient", "edge-b", at.Add(time.Millisecond/4), search.Index{}) // nothing indexed, same millisecond
	b.Release = store.Release{Patient: at.Add(time.Millisecond / 3)}          // sub-ms release
	c := rec("Basic", "edge-c", time.Time{}, search.Index{Has: []string{""}, Compartments: []string{""}})
	return []store.Record{a, b, c}
}

// ExampleRecords extracts the search values of every vendored example.
func ExampleRecords(t testing.TB) []store.Record {
	t.Helper()
	var files []string
	for _, dir := range []string{filepath.Join(root, "testdata/examples"), filepath.Join(root, "fhir/search/testdata/examples")} {
		fs, err := filepath.Glob(filepath.Join(dir, "*.json"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
	}
	if len(files) < 100 {
		t.Fatalf("only %d example files", len(files))
	}
	slices.Sort(files)
	reg := search.Default().WithBase("https://fhir.example/r4")
	rnd := rand.New(rand.NewPCG(1, 2))
	var out []store.Record
	for i, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		typ, _ := m["resourceType"].(string)
		id, _ := m["id"].(string)
		if typ == "Bundle" {
			continue
		}
		idx, err := reg.Extract(typ, m)
		if err != nil {
			t.Fatalf("extract %s: %v", f, err)
		}
		lu := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*time.Minute + time.Duration(rnd.IntN(1_000_000)))
		r := store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: lu, Index: idx}
		switch i % 4 {
		case 1:
			r.Release.Patient = lu.Add(time.Hour)
		case 2:
			r.Release.Proxy = store.Never
		}
		out = append(out, r)
	}
	return out
}

// gen builds conditions from the values of records (so they hit) and
// from variations of them (so they miss near the boundary).
type Gen struct {
	Rnd   *rand.Rand
	Conds map[string][]search.Expr // by kind
	seen  map[string]bool
}

// Add records e under kind once.
func (g *Gen) Add(kind string, e search.Expr) {
	k := kind + search.Key(e)
	if g.seen[k] {
		return
	}
	g.seen[k] = true
	g.Conds[kind] = append(g.Conds[kind], e)
}

func strp(s string) *string { return &s }

func (g *Gen) fromIndex(ix *search.Index, param func(string) string) {
	for _, v := range ix.Str {
		p := param(v.Param)
		for _, n := range []int{0, 1, len(v.Value) / 2, len(v.Value)} {
			if n <= len(v.Value) && utf8Prefix(v.Value, n) {
				g.Add("string", search.StringCond{Param: p, Value: v.Value[:n]})
			}
		}
		g.Add("string", search.StringCond{Param: p, Value: v.Value + "x"})
		if len(v.Value) > 2 {
			mid := v.Value[1 : len(v.Value)-1]
			if strings.ToValidUTF8(mid, "") == mid {
				g.Add("string", search.StringCond{Param: p, Value: mid, Mode: search.StringContains})
				g.Add("string", search.StringCond{Param: p, Value: mid})
			}
		}
		g.Add("string", search.StringCond{Param: p, Value: v.Value, Mode: search.StringExact})
		g.Add("string", search.StringCond{Param: p, Value: v.Exact, Mode: search.StringExact})
		g.Add("string", search.StringCond{Param: p, Value: strings.ToUpper(v.Value), Mode: search.StringExact})
		g.Add("string", search.StringCond{Param: p, Value: "", Mode: search.StringContains})
	}
	for _, v := range ix.Tok {
		p := param(v.Param)
		g.Add("token", search.TokenCond{Param: p, Code: strp(v.Code)})
		g.Add("token", search.TokenCond{Param: p, System: strp(v.System), Code: strp(v.Code)})
		g.Add("token", search.TokenCond{Param: p, System: strp(""), Code: strp(v.Code)})
		g.Add("token", search.TokenCond{Param: p, System: strp(v.System)})
		g.Add("token", search.TokenCond{Param: p, System: strp(v.System + "x"), Code: strp(v.Code)})
		g.Add("token", search.TokenCond{Param: p, Code: strp(strings.ToUpper(v.Code)), CodeFold: true})
		g.Add("token", search.TokenCond{Param: p, Code: strp(strings.ToUpper(v.Code))})
		g.Add("token", search.TokenCond{Param: p, System: strp(v.System), Code: strp(strings.ToLower(v.Code)), CodeFold: true})
		g.Add("token", search.TokenCond{Param: p, OfType: true, TypeSystem: v.TypeSystem, TypeCode: v.TypeCode, Code: strp(v.Code)})
		g.Add("token", search.TokenCond{Param: p, OfType: true, TypeSystem: v.TypeSystem, TypeCode: v.TypeCode})
		g.Add("token", search.TokenCond{Param: p})
		for _, w := range strings.Fields(v.Text) {
			for _, n := range []int{1, len(w)} {
				if utf8Prefix(w, n) {
					g.Add("token", search.TokenCond{Param: p, Text: w[:n]})
				}
			}
			if len(w) > 2 && utf8Prefix(w, 1) {
				if rest := w[1:]; strings.ToValidUTF8(rest, "") == rest {
					g.Add("token", search.TokenCond{Param: p, Text: rest}) // mid-word: no match
				}
			}
		}
		if v.Text != "" {
			g.Add("token", search.TokenCond{Param: p, Text: v.Text})
		}
	}
	for _, v := range ix.Ref {
		p := param(v.Param)
		g.Add("reference", search.RefCond{Param: p, Targets: []string{v.Ref}})
		g.Add("reference", search.RefCond{Param: p, Targets: []string{v.Ref, "Patient/zz"}, Types: []string{v.Type}})
		g.Add("reference", search.RefCond{Param: p, Targets: []string{v.Ref}, Types: []string{"Group"}})
		g.Add("reference", search.RefCond{Param: p, IDs: []string{v.ID}})
		g.Add("reference", search.RefCond{Param: p, IDs: []string{v.ID, "zz"}, Types: []string{v.Type, "Group"}})
		g.Add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}})
		g.Add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}, Version: v.Version})
		g.Add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}, Version: v.Version + "1"})
		if i := strings.LastIndex(v.Ref, "/"); i > 0 {
			g.Add("reference", search.RefCond{Param: p, URLs: []string{v.Ref[:i]}, Below: true})
			g.Add("reference", search.RefCond{Param: p, URLs: []string{"urn:nothing", v.Ref[:i+1]}, Below: true, Version: "x"})
		}
		g.Add("reference", search.RefCond{Param: p, URLs: []string{""}, Below: true})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(v.IDSystem), Code: strp(v.IDValue)}})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(""), Code: strp(v.IDValue)}})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(v.IDSystem)}})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{Code: strp(v.IDValue)}})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{}})
		g.Add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{Code: strp(v.IDValue)}, Targets: []string{v.Ref}, IDs: []string{v.ID}})
		g.Add("reference", search.RefCond{Param: p})
	}
	for _, v := range ix.Date {
		p := param(v.Param)
		ranges := [][2]time.Time{
			{v.Lo, v.Hi},
			{v.Lo.AddDate(0, 0, -1), v.Lo},
			{v.Hi, v.Hi.AddDate(0, 0, 1)},
			{v.Lo.Add(time.Millisecond / 2), v.Hi.Add(-time.Millisecond / 2)},
			{v.Lo.Add(-time.Millisecond), v.Hi.Add(time.Millisecond)},
			{v.Lo.Add(time.Duration(g.Rnd.Int64N(int64(time.Hour)))), v.Lo.Add(time.Duration(g.Rnd.Int64N(int64(48 * time.Hour))))},
		}
		for _, rg := range ranges {
			for _, pre := range Prefixes {
				g.Add("date", search.DateCond{Param: p, Prefix: pre, Lo: rg[0], Hi: rg[1]})
			}
		}
	}
	numRanges := func(v, lo, hi float64) [][3]float64 {
		return [][3]float64{
			{v, lo, hi},
			{v, v - 0.05, v + 0.05},
			{lo, lo - 0.5, lo + 0.5},
			{hi, hi - 0.5, hi + 0.5},
			{v + 1, v + 0.5, v + 1.5},
			{v - 1, v - 1.5, v - 0.5},
			{v, v - math.Abs(v)/10, v + math.Abs(v)/10},
		}
	}
	for _, v := range ix.Num {
		p := param(v.Param)
		for _, r := range numRanges(v.Value, v.Lo, v.Hi) {
			for _, pre := range Prefixes {
				g.Add("number", search.NumberCond{Param: p, Prefix: pre, Value: r[0], Lo: r[1], Hi: r[2]})
			}
		}
	}
	for _, v := range ix.Qty {
		p := param(v.Param)
		units := [][2]string{{"", ""}, {v.System, v.Code}, {v.System, ""}, {"", v.Code}, {"", v.Unit}, {v.System, v.Unit}, {"urn:other", v.Code}}
		for ri, r := range numRanges(v.Value, v.Lo, v.Hi) {
			for _, pre := range Prefixes {
				for ui, u := range units {
					if ri > 1 && ui > 1 && g.Rnd.IntN(3) > 0 {
						continue // every unit rule on the value itself; a sample beyond
					}
					g.Add("quantity", search.QuantityCond{Param: p, Prefix: pre, Value: r[0], Lo: r[1], Hi: r[2], System: u[0], Code: u[1]})
				}
			}
		}
	}
	for _, v := range ix.URI {
		p := param(v.Param)
		for _, mode := range []search.URIMode{search.URIExact, search.URIBelow, search.URIAbove} {
			g.Add("uri", search.URICond{Param: p, Value: v.Value, Mode: mode})
			g.Add("uri", search.URICond{Param: p, Value: v.Value + "/x/y", Mode: mode})
			g.Add("uri", search.URICond{Param: p, Value: v.Value + "9", Mode: mode})
			if i := strings.LastIndex(v.Value, "/"); i > 0 {
				g.Add("uri", search.URICond{Param: p, Value: v.Value[:i], Mode: mode})
				g.Add("uri", search.URICond{Param: p, Value: v.Value[:i+1], Mode: mode})
			}
		}
	}
}

// utf8Prefix reports whether s[:n] ends on a rune boundary.
func utf8Prefix(s string, n int) bool {
	return n <= len(s) && strings.ToValidUTF8(s[:n], "") == s[:n]
}

// composites builds composite conditions from the tuples of ix: the parts
// of one tuple (a hit), parts mixed across tuples (a miss), every prefix
// on the ordered part.
func (g *Gen) composites(ix *search.Index) {
	var tuples []*Gen
	for _, c := range ix.Comp {
		sub := &Gen{Rnd: g.Rnd, Conds: map[string][]search.Expr{}, seen: map[string]bool{}}
		sub.fromIndex(&c.Parts, func(p string) string { return p })
		tuples = append(tuples, sub)
		var parts [][]search.Expr
		for _, kind := range []string{"token", "string", "reference", "uri", "date", "number", "quantity"} {
			for pos := 0; pos < 6; pos++ {
				var ofPos []search.Expr
				for _, e := range sub.Conds[kind] {
					if paramOf(e) == fmt.Sprint(pos) {
						ofPos = append(ofPos, e)
					}
				}
				if len(ofPos) > 0 {
					parts = append(parts, ofPos)
				}
			}
		}
		if len(parts) == 0 {
			continue
		}
		g.Add("composite", search.CompositeCond{Param: c.Param})
		for range 40 {
			var ps []search.Expr
			for _, opts := range parts {
				if g.Rnd.IntN(4) == 0 && len(ps) > 0 {
					continue
				}
				ps = append(ps, opts[g.Rnd.IntN(len(opts))])
			}
			g.Add("composite", search.CompositeCond{Param: c.Param, Parts: ps})
		}
	}
	// Parts drawn from different tuples of the same parameter.
	for i := range tuples {
		for j := range tuples {
			if i == j || ix.Comp[i].Param != ix.Comp[j].Param {
				continue
			}
			a, b := tuples[i].Conds["token"], tuples[j].Conds["quantity"]
			if len(a) > 0 && len(b) > 0 {
				g.Add("composite", search.CompositeCond{Param: ix.Comp[i].Param, Parts: []search.Expr{a[g.Rnd.IntN(len(a))], b[g.Rnd.IntN(len(b))]}})
			}
		}
	}
}

func paramOf(e search.Expr) string {
	switch x := e.(type) {
	case search.StringCond:
		return x.Param
	case search.TokenCond:
		return x.Param
	case search.RefCond:
		return x.Param
	case search.DateCond:
		return x.Param
	case search.NumberCond:
		return x.Param
	case search.QuantityCond:
		return x.Param
	case search.URICond:
		return x.Param
	}
	return ""
}

func (g *Gen) FromRecord(r store.Record) {
	g.fromIndex(&r.Index, func(p string) string { return p })
	g.composites(&r.Index)
	for _, h := range r.Index.Has {
		g.Add("missing", search.MissingCond{Param: h, Missing: true})
		g.Add("missing", search.MissingCond{Param: h})
	}
	g.Add("id", search.IDCond{IDs: []string{r.ID}})
	g.Add("id", search.KeyCond{Keys: []string{r.Key(), "Patient/zz"}})
	g.Add("id", search.TypeCond{Types: []string{r.Type}})
	if len(r.Index.Compartments) > 0 {
		g.Add("access", search.CompartmentCond{Compartments: r.Index.Compartments[:1]})
	}
	if len(r.Index.Security) > 0 {
		g.Add("access", search.SecurityCond{Labels: r.Index.Security[:1]})
		g.Add("access", search.Not{Arg: search.SecurityCond{Labels: r.Index.Security}})
	}
	for _, at := range []time.Time{r.Release.Patient, r.Release.Proxy, r.LastUpdated} {
		for _, d := range []time.Duration{-time.Millisecond, -time.Millisecond / 2, 0, time.Millisecond / 2, time.Millisecond} {
			g.Add("access", search.ReleaseCond{Audience: "patient", Now: at.Add(d)})
			g.Add("access", search.ReleaseCond{Audience: "proxy", Now: at.Add(d)})
		}
	}
	lu := r.LastUpdated
	for _, rg := range [][2]time.Time{
		{lu.Truncate(24 * time.Hour), lu.Truncate(24 * time.Hour).Add(24 * time.Hour)},
		{lu, lu},
		{lu.Truncate(time.Millisecond), lu.Truncate(time.Millisecond).Add(time.Millisecond)},
		{lu.Add(-time.Minute), lu.Add(-time.Second)},
		{lu.Add(time.Millisecond / 2), lu.Add(time.Minute)},
	} {
		for _, pre := range Prefixes {
			g.Add("lastUpdated", search.LastUpdatedCond{Prefix: pre, Lo: rg[0], Hi: rg[1]})
		}
	}
}

// fixed are conditions not derived from a record: empty lists, constants,
// nil, odd values.
func FixedConds() map[string][]search.Expr {
	return map[string][]search.Expr{
		"id": {
			search.IDCond{}, search.KeyCond{}, search.TypeCond{}, search.IDCond{IDs: []string{""}},
			search.KeyCond{Keys: []string{"Basic/", "/", ""}}, search.TypeCond{Types: []string{"Basic", "Observation"}},
		},
		"access": {
			search.CompartmentCond{}, search.SecurityCond{}, search.CompartmentCond{Compartments: []string{""}},
			search.SecurityCond{Labels: []string{"urn:x|"}},
			search.ReleaseCond{Audience: "patient"}, search.ReleaseCond{Audience: "proxy", Now: store.Never},
		},
		"missing": {search.MissingCond{Param: ""}, search.MissingCond{Param: "", Missing: true}, search.MissingCond{Param: "nothing", Missing: true}},
		"const":   {nil, search.Const{}, search.Const{Value: true}, search.And{}, search.Or{}, search.Not{Arg: search.Const{}}, search.Not{}},
		"string": {
			search.StringCond{Param: "name", Value: "", Mode: search.StringExact},
			search.StringCond{Param: "name", Value: "sm.th"}, search.StringCond{Param: "_text", Value: ".c*", Mode: search.StringContains},
			search.StringCond{Param: "name", Value: "o'neil", Mode: search.StringMode(9)},
		},
		"token": {
			search.TokenCond{Param: "code", Code: strp("")}, search.TokenCond{Param: "code", Code: strp(""), CodeFold: true},
			search.TokenCond{Param: "code", System: strp(""), Code: strp("abc")}, search.TokenCond{Param: "code", System: strp("")},
			search.TokenCond{Param: "identifier", OfType: true, TypeCode: "MR", Code: strp("2")},
			search.TokenCond{Param: "code", Code: strp("a.c"), CodeFold: true}, search.TokenCond{Param: "status", Text: "fin"},
			search.TokenCond{Param: "code", Text: "rate pan"}, search.TokenCond{Param: "code", Text: "eart"},
		},
		"reference": {
			search.RefCond{Param: "subject", IDs: []string{""}}, search.RefCond{Param: "subject", Targets: []string{""}},
			search.RefCond{Param: "subject", Targets: []string{"p1"}, Types: []string{"p1"}},
			search.RefCond{Param: "subject", IDs: []string{"p1"}, Types: []string{"Group"}, URLs: []string{"http://x"}},
			search.RefCond{Param: "instantiates", URLs: []string{"http://hl7.org/fhir/ig/core/StructureDefinition/x"}, Version: ""},
		},
		"uri": {
			search.URICond{Param: "url", Value: ""}, search.URICond{Param: "url", Value: "", Mode: search.URIBelow},
			search.URICond{Param: "url", Value: "", Mode: search.URIAbove}, search.URICond{Param: "url", Value: "http://acme.org/fhir/ValueSet/123", Mode: search.URIMode(7)},
			search.URICond{Param: "url", Value: "http://acme.org/fhir/x", Mode: search.URIAbove},
		},
		"composite": {
			search.CompositeCond{Param: "code-value-quantity", Parts: []search.Expr{search.RefCond{Param: "0"}}},
			search.CompositeCond{Param: "code-value-quantity", Parts: []search.Expr{search.CompositeCond{Param: "0"}}},
		},
	}
}

// BadConds are rejected by both (an unknown node, prefix or audience).
func BadConds() []search.Expr {
	type bogus struct{ search.Expr }
	return []search.Expr{
		bogus{}, search.And{Args: []search.Expr{search.Const{}, bogus{}}}, search.Not{Arg: bogus{}},
		search.DateCond{Param: "date", Prefix: "xx"}, search.NumberCond{Param: "probability", Prefix: "xx"},
		search.QuantityCond{Param: "value-quantity", Prefix: "xx"}, search.LastUpdatedCond{Prefix: "xx"},
		search.ReleaseCond{Audience: "nobody"},
		search.CompositeCond{Param: "c", Parts: []search.Expr{search.MissingCond{Param: "0"}}},
		search.CompositeCond{Param: "c", Parts: []search.Expr{search.DateCond{Param: "0", Prefix: "xx"}}},
		search.Or{Args: []search.Expr{search.Const{Value: true}, search.ReleaseCond{}}},
	}
}

// day is the midnight UTC of a YYYY-MM-DD date.
func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}
