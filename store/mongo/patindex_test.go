package mongo

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/store"
)

func patientRecord(typ, id string, patient int, lu int, code string) store.Record {
	p := fmt.Sprintf("Patient/p%d", patient)
	return store.Record{Type: typ, ID: id, VersionID: 1, LastUpdated: time.Unix(1700000000+int64(lu), 0).UTC(),
		Raw: []byte(fmt.Sprintf(`{"resourceType":%q,"id":%q}`, typ, id)),
		Index: search.Index{
			Tok:          []search.TokValue{{Param: "code", System: "http://loinc.org", Code: code}},
			Ref:          []search.RefValue{{Param: "subject", Ref: p, Type: "Patient", ID: fmt.Sprintf("p%d", patient)}, {Param: "patient", Ref: p, Type: "Patient", ID: fmt.Sprintf("p%d", patient)}},
			Compartments: []string{p},
			Sort:         map[string]any{"code": code},
		}}
}

// The patient index answers exactly what a scan answers: same records in
// the same order, same totals, same pages, for compartment and reference
// filters, alone or with others, every order; writes made after it was
// built are found, deletions are not.
func TestPatientIndexEqualsScan(t *testing.T) {
	ctx := context.Background()
	idx := openTest(t, embeddedURI, Options{PatientIndex: true})
	var ops []store.Op
	for i := 0; i < 120; i++ {
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: patientRecord("Observation", fmt.Sprintf("o%03d", i), i%7, i%13, fmt.Sprint("c", i%4))})
	}
	for i := 0; i < 7; i++ {
		r := patientRecord("Patient", fmt.Sprintf("p%d", i), i, i, "")
		r.Index.Ref = nil
		ops = append(ops, store.Op{Kind: store.OpCreate, Record: r})
	}
	if err := idx.Transact(ctx, ops); err != nil {
		t.Fatal(err)
	}
	scan := reopen(t, idx, Options{scanOnly: true}) // same database, scans
	// Built in the background at Open: a store opened on existing data.
	idx2 := reopen(t, idx, Options{PatientIndex: true})
	for _, s := range []*Store{idx, idx2} {
		deadline := time.Now().Add(10 * time.Second)
		for !s.pidx.ready.Load() {
			if time.Now().After(deadline) {
				t.Fatal("patient index not ready")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c1 := "c1"
	compare := func(stores ...*Store) {
		filters := map[string]search.Expr{
			"compartment":         search.CompartmentCond{Compartments: []string{"Patient/p3"}},
			"two compartments":    search.CompartmentCond{Compartments: []string{"Patient/p3", "Patient/p5"}},
			"patient=":            search.RefCond{Param: "patient", Targets: []string{"Patient/p1"}},
			"patient=id:Patient":  search.RefCond{Param: "subject", IDs: []string{"p5"}, Types: []string{"Patient"}},
			"and with code":       search.AllOf(search.RefCond{Param: "patient", Targets: []string{"Patient/p3"}}, search.TokenCond{Param: "code", Code: &c1}),
			"compartment and ref": search.AllOf(search.CompartmentCond{Compartments: []string{"Patient/p5"}}, search.RefCond{Param: "patient", Targets: []string{"Patient/p5", "Patient/p1"}}),
			"nobody":              search.CompartmentCond{Compartments: []string{"Patient/none"}},
			"ids":                 search.IDCond{IDs: []string{"o010", "o005", "nope", "o003", "o005"}},
			"keys":                search.KeyCond{Keys: []string{"Observation/o005", "Patient/p1", "Observation/late"}},
			"ids and compartment": search.AllOf(search.IDCond{IDs: []string{"o005", "o006"}}, search.CompartmentCond{Compartments: []string{"Patient/p5"}}),
		}
		sorts := [][]search.SortKey{nil, {{Param: "_lastUpdated", Desc: true}}, {{Param: "code"}, {Param: "_lastUpdated", Desc: true}}}
		for name, f := range filters {
			if _, ok := idx.candidateIDs("Observation", f); !ok {
				t.Fatalf("%s: not answered from the index", name)
			}
			for si, srt := range sorts {
				for _, count := range []int{0, 5, 100} {
					walk := func(s *Store) (keys []string, totals []int64) {
						q := store.Query{Types: []string{"Observation"}, Filter: f, Sort: srt, Count: count, Total: true}
						for page := 0; page < 200; page++ {
							p, err := s.Search(ctx, q)
							if err != nil {
								t.Fatalf("%s: %v", name, err)
							}
							totals = append(totals, p.Total)
							for _, r := range p.Records {
								keys = append(keys, fmt.Sprintf("%s@%d", r.Key(), r.VersionID))
							}
							if p.Next == "" {
								return
							}
							q.Cursor = p.Next
						}
						t.Fatalf("%s: endless paging", name)
						return
					}
					want, wantT := walk(scan)
					for _, s := range stores {
						got, gotT := walk(s)
						if !slices.Equal(got, want) || !slices.Equal(gotT, wantT) {
							t.Errorf("%s, sort %d, count %d:\nindex %v %v\nscan  %v %v", name, si, count, got, gotT, want, wantT)
						}
					}
				}
			}
		}
	}
	// Built in the background from the data there (a restart).
	compare(idx2)
	// Later writes: a create, an update moving a resource to another
	// patient, a deletion.
	mustOne := func(op store.Op) {
		t.Helper()
		if err := idx.Transact(ctx, []store.Op{op}); err != nil {
			t.Fatal(err)
		}
	}
	mustOne(store.Op{Kind: store.OpCreate, Record: patientRecord("Observation", "late", 3, 50, "c1")})
	moved := patientRecord("Observation", "o001", 5, 60, "c1")
	moved.VersionID = 2
	mustOne(store.Op{Kind: store.OpPut, Record: moved, IfVersion: 1})
	// A mixed transaction (the journal protocol): an update moving o002
	// to p3 and a create for p3.
	o002 := patientRecord("Observation", "o002", 3, 61, "c1")
	o002.VersionID = 2
	if err := idx.Transact(ctx, []store.Op{{Kind: store.OpPut, Record: o002, IfVersion: 1},
		{Kind: store.OpCreate, Record: patientRecord("Observation", "late2", 3, 62, "c2")}}); err != nil {
		t.Fatal(err)
	}
	mustOne(store.Op{Kind: store.OpDelete, IfVersion: 1, Record: store.Record{Type: "Observation", ID: "o003", VersionID: 2, LastUpdated: time.Unix(1700000070, 0).UTC(), Deleted: true}})

	// Kept up to date by this store's own writes (the index is per
	// process: one process owns an embedded store).
	compare(idx)
	// Not answered from the index: no patient condition, or one that could
	// name other types.
	for _, f := range []search.Expr{nil, search.TokenCond{Param: "code", Code: &c1}, search.RefCond{Param: "subject", IDs: []string{"p1"}}} {
		if _, ok := idx.candidateIDs("Observation", f); ok {
			t.Errorf("%#v answered from the index", f)
		}
	}
}
