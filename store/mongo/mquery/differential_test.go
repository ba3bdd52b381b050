package mquery

// The differential test of the one in-memory matcher (search.Matcher, used
// by the pipeline's access decisions and as the FerretDB re-check) against
// the semantics of the filters this package renders (irMatch: the lowered
// form evaluated field by field as MongoDB does). Covers search.html
// #string, #token, #reference, #date, #number, #quantity, #uri,
// #composite, #missing, #prefix (every prefix), _id, _lastUpdated and the
// access-control nodes, on hand-built records with edge values and on the
// search values extracted from every vendored official example.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

var allPrefixes = []search.Prefix{"", search.Eq, search.Ne, search.Gt, search.Lt, search.Ge, search.Le, search.Sa, search.Eb, search.Ap}

// irMatcher compiles e once for irMatch semantics.
func irMatcher(e search.Expr) (func(store.Record) bool, error) {
	n, err := lowerer{}.lower(e)
	if err != nil {
		return nil, err
	}
	return func(r store.Record) bool { return evalNode(n, &r) }, nil
}

// edgeRecords are hand-built versions with the values where the rules
// differ: absent ("") fields, exact strings with and without X, words of
// token text, sub-millisecond instants, open ranges, unit text, canonical
// versions, identifiers without a system, nested paths.
func edgeRecords() []store.Record {
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
	c := rec("Basic", "", time.Time{}, search.Index{Has: []string{""}, Compartments: []string{""}})
	return []store.Record{a, b, c}
}

// exampleRecords extracts the search values of every vendored example.
func exampleRecords(t *testing.T) []store.Record {
	t.Helper()
	var files []string
	for _, dir := range []string{"../../../testdata/examples", "../../../fhir/search/testdata/examples"} {
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
type gen struct {
	rnd   *rand.Rand
	conds map[string][]search.Expr // by kind
	seen  map[string]bool
}

func (g *gen) add(kind string, e search.Expr) {
	k := kind + fmt.Sprintf("%#v", e)
	if g.seen[k] {
		return
	}
	g.seen[k] = true
	g.conds[kind] = append(g.conds[kind], e)
}

func strp(s string) *string { return &s }

func (g *gen) fromIndex(ix *search.Index, param func(string) string) {
	for _, v := range ix.Str {
		p := param(v.Param)
		for _, n := range []int{0, 1, len(v.Value) / 2, len(v.Value)} {
			if n <= len(v.Value) && utf8Prefix(v.Value, n) {
				g.add("string", search.StringCond{Param: p, Value: v.Value[:n]})
			}
		}
		g.add("string", search.StringCond{Param: p, Value: v.Value + "x"})
		if len(v.Value) > 2 {
			mid := v.Value[1 : len(v.Value)-1]
			if strings.ToValidUTF8(mid, "") == mid {
				g.add("string", search.StringCond{Param: p, Value: mid, Mode: search.StringContains})
				g.add("string", search.StringCond{Param: p, Value: mid})
			}
		}
		g.add("string", search.StringCond{Param: p, Value: v.Value, Mode: search.StringExact})
		g.add("string", search.StringCond{Param: p, Value: v.Exact, Mode: search.StringExact})
		g.add("string", search.StringCond{Param: p, Value: strings.ToUpper(v.Value), Mode: search.StringExact})
		g.add("string", search.StringCond{Param: p, Value: "", Mode: search.StringContains})
	}
	for _, v := range ix.Tok {
		p := param(v.Param)
		g.add("token", search.TokenCond{Param: p, Code: strp(v.Code)})
		g.add("token", search.TokenCond{Param: p, System: strp(v.System), Code: strp(v.Code)})
		g.add("token", search.TokenCond{Param: p, System: strp(""), Code: strp(v.Code)})
		g.add("token", search.TokenCond{Param: p, System: strp(v.System)})
		g.add("token", search.TokenCond{Param: p, System: strp(v.System + "x"), Code: strp(v.Code)})
		g.add("token", search.TokenCond{Param: p, Code: strp(strings.ToUpper(v.Code)), CodeFold: true})
		g.add("token", search.TokenCond{Param: p, Code: strp(strings.ToUpper(v.Code))})
		g.add("token", search.TokenCond{Param: p, System: strp(v.System), Code: strp(strings.ToLower(v.Code)), CodeFold: true})
		g.add("token", search.TokenCond{Param: p, OfType: true, TypeSystem: v.TypeSystem, TypeCode: v.TypeCode, Code: strp(v.Code)})
		g.add("token", search.TokenCond{Param: p, OfType: true, TypeSystem: v.TypeSystem, TypeCode: v.TypeCode})
		g.add("token", search.TokenCond{Param: p})
		for _, w := range strings.Fields(v.Text) {
			for _, n := range []int{1, len(w)} {
				if utf8Prefix(w, n) {
					g.add("token", search.TokenCond{Param: p, Text: w[:n]})
				}
			}
			if len(w) > 2 && utf8Prefix(w, 1) {
				if rest := w[1:]; strings.ToValidUTF8(rest, "") == rest {
					g.add("token", search.TokenCond{Param: p, Text: rest}) // mid-word: no match
				}
			}
		}
		if v.Text != "" {
			g.add("token", search.TokenCond{Param: p, Text: v.Text})
		}
	}
	for _, v := range ix.Ref {
		p := param(v.Param)
		g.add("reference", search.RefCond{Param: p, Targets: []string{v.Ref}})
		g.add("reference", search.RefCond{Param: p, Targets: []string{v.Ref, "Patient/zz"}, Types: []string{v.Type}})
		g.add("reference", search.RefCond{Param: p, Targets: []string{v.Ref}, Types: []string{"Group"}})
		g.add("reference", search.RefCond{Param: p, IDs: []string{v.ID}})
		g.add("reference", search.RefCond{Param: p, IDs: []string{v.ID, "zz"}, Types: []string{v.Type, "Group"}})
		g.add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}})
		g.add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}, Version: v.Version})
		g.add("reference", search.RefCond{Param: p, URLs: []string{v.Ref}, Version: v.Version + "1"})
		if i := strings.LastIndex(v.Ref, "/"); i > 0 {
			g.add("reference", search.RefCond{Param: p, URLs: []string{v.Ref[:i]}, Below: true})
			g.add("reference", search.RefCond{Param: p, URLs: []string{"urn:nothing", v.Ref[:i+1]}, Below: true, Version: "x"})
		}
		g.add("reference", search.RefCond{Param: p, URLs: []string{""}, Below: true})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(v.IDSystem), Code: strp(v.IDValue)}})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(""), Code: strp(v.IDValue)}})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{System: strp(v.IDSystem)}})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{Code: strp(v.IDValue)}})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{}})
		g.add("reference", search.RefCond{Param: p, Identifier: &search.TokenCond{Code: strp(v.IDValue)}, Targets: []string{v.Ref}, IDs: []string{v.ID}})
		g.add("reference", search.RefCond{Param: p})
	}
	for _, v := range ix.Date {
		p := param(v.Param)
		ranges := [][2]time.Time{
			{v.Lo, v.Hi},
			{v.Lo.AddDate(0, 0, -1), v.Lo},
			{v.Hi, v.Hi.AddDate(0, 0, 1)},
			{v.Lo.Add(time.Millisecond / 2), v.Hi.Add(-time.Millisecond / 2)},
			{v.Lo.Add(-time.Millisecond), v.Hi.Add(time.Millisecond)},
			{v.Lo.Add(time.Duration(g.rnd.Int64N(int64(time.Hour)))), v.Lo.Add(time.Duration(g.rnd.Int64N(int64(48 * time.Hour))))},
		}
		for _, rg := range ranges {
			for _, pre := range allPrefixes {
				g.add("date", search.DateCond{Param: p, Prefix: pre, Lo: rg[0], Hi: rg[1]})
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
			for _, pre := range allPrefixes {
				g.add("number", search.NumberCond{Param: p, Prefix: pre, Value: r[0], Lo: r[1], Hi: r[2]})
			}
		}
	}
	for _, v := range ix.Qty {
		p := param(v.Param)
		units := [][2]string{{"", ""}, {v.System, v.Code}, {v.System, ""}, {"", v.Code}, {"", v.Unit}, {v.System, v.Unit}, {"urn:other", v.Code}}
		for ri, r := range numRanges(v.Value, v.Lo, v.Hi) {
			for _, pre := range allPrefixes {
				for ui, u := range units {
					if ri > 1 && ui > 1 && g.rnd.IntN(3) > 0 {
						continue // every unit rule on the value itself; a sample beyond
					}
					g.add("quantity", search.QuantityCond{Param: p, Prefix: pre, Value: r[0], Lo: r[1], Hi: r[2], System: u[0], Code: u[1]})
				}
			}
		}
	}
	for _, v := range ix.URI {
		p := param(v.Param)
		for _, mode := range []search.URIMode{search.URIExact, search.URIBelow, search.URIAbove} {
			g.add("uri", search.URICond{Param: p, Value: v.Value, Mode: mode})
			g.add("uri", search.URICond{Param: p, Value: v.Value + "/x/y", Mode: mode})
			g.add("uri", search.URICond{Param: p, Value: v.Value + "9", Mode: mode})
			if i := strings.LastIndex(v.Value, "/"); i > 0 {
				g.add("uri", search.URICond{Param: p, Value: v.Value[:i], Mode: mode})
				g.add("uri", search.URICond{Param: p, Value: v.Value[:i+1], Mode: mode})
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
func (g *gen) composites(ix *search.Index) {
	var tuples []*gen
	for _, c := range ix.Comp {
		sub := &gen{rnd: g.rnd, conds: map[string][]search.Expr{}, seen: map[string]bool{}}
		sub.fromIndex(&c.Parts, func(p string) string { return p })
		tuples = append(tuples, sub)
		var parts [][]search.Expr
		for _, kind := range []string{"token", "string", "reference", "uri", "date", "number", "quantity"} {
			for pos := 0; pos < 6; pos++ {
				var ofPos []search.Expr
				for _, e := range sub.conds[kind] {
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
		g.add("composite", search.CompositeCond{Param: c.Param})
		for range 40 {
			var ps []search.Expr
			for _, opts := range parts {
				if g.rnd.IntN(4) == 0 && len(ps) > 0 {
					continue
				}
				ps = append(ps, opts[g.rnd.IntN(len(opts))])
			}
			g.add("composite", search.CompositeCond{Param: c.Param, Parts: ps})
		}
	}
	// Parts drawn from different tuples of the same parameter.
	for i := range tuples {
		for j := range tuples {
			if i == j || ix.Comp[i].Param != ix.Comp[j].Param {
				continue
			}
			a, b := tuples[i].conds["token"], tuples[j].conds["quantity"]
			if len(a) > 0 && len(b) > 0 {
				g.add("composite", search.CompositeCond{Param: ix.Comp[i].Param, Parts: []search.Expr{a[g.rnd.IntN(len(a))], b[g.rnd.IntN(len(b))]}})
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

func (g *gen) fromRecord(r store.Record) {
	g.fromIndex(&r.Index, func(p string) string { return p })
	g.composites(&r.Index)
	for _, h := range r.Index.Has {
		g.add("missing", search.MissingCond{Param: h, Missing: true})
		g.add("missing", search.MissingCond{Param: h})
	}
	g.add("id", search.IDCond{IDs: []string{r.ID}})
	g.add("id", search.KeyCond{Keys: []string{r.Key(), "Patient/zz"}})
	g.add("id", search.TypeCond{Types: []string{r.Type}})
	if len(r.Index.Compartments) > 0 {
		g.add("access", search.CompartmentCond{Compartments: r.Index.Compartments[:1]})
	}
	if len(r.Index.Security) > 0 {
		g.add("access", search.SecurityCond{Labels: r.Index.Security[:1]})
		g.add("access", search.Not{Arg: search.SecurityCond{Labels: r.Index.Security}})
	}
	for _, at := range []time.Time{r.Release.Patient, r.Release.Proxy, r.LastUpdated} {
		for _, d := range []time.Duration{-time.Millisecond, -time.Millisecond / 2, 0, time.Millisecond / 2, time.Millisecond} {
			g.add("access", search.ReleaseCond{Audience: "patient", Now: at.Add(d)})
			g.add("access", search.ReleaseCond{Audience: "proxy", Now: at.Add(d)})
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
		for _, pre := range allPrefixes {
			g.add("lastUpdated", search.LastUpdatedCond{Prefix: pre, Lo: rg[0], Hi: rg[1]})
		}
	}
}

// fixed are conditions not derived from a record: empty lists, constants,
// nil, odd values.
func fixedConds() map[string][]search.Expr {
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

// badConds are rejected by both (an unknown node, prefix or audience).
func badConds() []search.Expr {
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

// TestMatcherAgreesWithFilterSemantics is the differential test: for
// every record and every condition, search.Match decides what irMatch
// (the rendered filters' semantics) decides, and both reject the same
// expressions. Each kind must produce both matches and non-matches.
func TestMatcherAgreesWithFilterSemantics(t *testing.T) {
	recs := append(append(fixtures(), edgeRecords()...), exampleRecords(t)...)
	g := &gen{rnd: rand.New(rand.NewPCG(3, 4)), conds: map[string][]search.Expr{}, seen: map[string]bool{}}
	for _, r := range recs {
		g.fromRecord(r)
	}
	// Combinations: And / Or / Not of random conditions of all kinds.
	var pool []search.Expr
	for _, es := range g.conds {
		pool = append(pool, es...)
	}
	slices.SortFunc(pool, func(a, b search.Expr) int { return strings.Compare(fmt.Sprintf("%#v", a), fmt.Sprintf("%#v", b)) })
	pick := func() search.Expr { return pool[g.rnd.IntN(len(pool))] }
	for range 300 {
		g.add("combined", search.And{Args: []search.Expr{pick(), pick()}})
		g.add("combined", search.Or{Args: []search.Expr{pick(), pick(), pick()}})
		g.add("combined", search.Not{Arg: search.Or{Args: []search.Expr{pick(), search.Not{Arg: pick()}}}})
		a := search.And{Args: []search.Expr{pick(), pick()}}
		g.add("combined", &a)
	}

	// A deterministic sample per kind keeps the run to a few seconds (the
	// reference evaluator builds every array element as a map).
	limit := 1000
	if testing.Short() {
		limit = 300
	}
	// The hand-written conditions always run.
	fixed := fixedConds()
	for kind := range fixed {
		if _, ok := g.conds[kind]; !ok {
			g.conds[kind] = nil
		}
	}
	kinds := make([]string, 0, len(g.conds))
	for kind := range g.conds {
		kinds = append(kinds, kind)
	}
	slices.Sort(kinds)
	total := 0
	for _, kind := range kinds {
		conds := g.conds[kind]
		if len(conds) > limit {
			g.rnd.Shuffle(len(conds), func(i, j int) { conds[i], conds[j] = conds[j], conds[i] })
			conds = conds[:limit]
		}
		conds = append(slices.Clone(fixed[kind]), conds...)
		hits, misses := 0, 0
		for _, e := range conds {
			want, err := irMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: irMatch: %v", kind, e, err)
			}
			m, err := search.NewMatcher(e)
			if err != nil {
				t.Fatalf("%s %#v: search.NewMatcher: %v", kind, e, err)
			}
			for _, r := range recs {
				w := want(r)
				if got := m.Match(subject(&r)); got != w {
					t.Errorf("%s %#v on %s: search.Match %v, filter semantics %v", kind, e, r.Key(), got, w)
				}
				if w {
					hits++
				} else {
					misses++
				}
				total++
			}
		}
		t.Logf("%-11s %5d of %5d conditions, %7d matches, %8d non-matches", kind, len(conds), len(fixed[kind])+len(g.conds[kind]), hits, misses)
		if hits == 0 || misses == 0 {
			t.Errorf("%s: %d matches, %d non-matches: the kind is not exercised both ways", kind, hits, misses)
		}
	}
	for _, kind := range []string{"string", "token", "reference", "date", "number", "quantity", "uri", "composite", "missing", "id", "lastUpdated", "access", "const", "combined"} {
		if len(g.conds[kind])+len(fixed[kind]) == 0 {
			t.Errorf("no %s conditions", kind)
		}
	}
	t.Logf("%d evaluations on %d records", total, len(recs))

	for _, e := range badConds() {
		_, ierr := irMatcher(e)
		_, merr := search.NewMatcher(e)
		if ierr == nil || merr == nil {
			t.Errorf("%#v: irMatch error %v, search error %v: both must reject it", e, ierr, merr)
		}
	}
}

// TestMatchEqualsEval: the mquery entry points and search.Eval are the
// same matcher.
func TestMatchEqualsEval(t *testing.T) {
	for _, tc := range cases() {
		m, err := NewMatcher(tc.e)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range fixtures() {
			a, err1 := Match(tc.e, r)
			b, err2 := search.Eval(tc.e, subject(&r))
			if err1 != nil || err2 != nil || a != b || m.Match(r) != a {
				t.Errorf("%s on %s: Match %v %v, Eval %v %v", tc.name, r.Key(), a, err1, b, err2)
			}
		}
	}
}
