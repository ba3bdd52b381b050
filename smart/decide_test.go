package smart

import (
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// nonCompartment are types that hold no patient data (search.PatientFree).
var nonCompartment = []string{"Practitioner", "PractitionerRole", "Organization", "Location", "Medication"}

func testDecider() *Decider {
	return &Decider{
		PatientFree: func(t string) bool { return slices.Contains(nonCompartment, t) },
		CompileQuery: func(typ string, q url.Values) (search.Expr, error) {
			keys := make([]string, 0, len(q))
			for k := range q {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var xs []search.Expr
			for _, k := range keys {
				if k == "bogus" {
					return nil, fmt.Errorf("unknown parameter %s for %s", k, typ)
				}
				code := q.Get(k)
				xs = append(xs, search.TokenCond{Param: k, Code: &code})
			}
			return search.AllOf(xs...), nil
		},
	}
}

func principal(scopes, patient, fhirUser string) *Principal {
	s, err := ParseScopes(scopes)
	if err != nil {
		panic(err)
	}
	return &Principal{Scopes: s, Patient: patient, FHIRUser: fhirUser}
}

func cpt(ids ...string) search.Expr {
	var c []string
	for _, id := range ids {
		c = append(c, "Patient/"+id)
	}
	return search.CompartmentCond{Compartments: c}
}

func tok(param, code string) search.Expr { return search.TokenCond{Param: param, Code: &code} }

const (
	allow = true
	deny  = false
)

// scopes-and-launch-context.html: scope semantics, launch context,
// v1 read = rs, write = cud; patient/ confined to the patient compartment.
func TestDecide(t *testing.T) {
	type tc struct {
		name      string
		p         *Principal
		access    Access
		allow     bool
		where     search.Expr
		needScope string // Decision.Scope on deny
	}
	tests := []tc{
		// v2 permissions
		{"rs read", principal("patient/Observation.rs", "123", ""), Access{"read", "Observation"}, allow, cpt("123"), ""},
		{"rs search", principal("patient/Observation.rs", "123", ""), Access{"search", "Observation"}, allow, cpt("123"), ""},
		{"r vread", principal("patient/Observation.r", "123", ""), Access{"vread", "Observation"}, allow, cpt("123"), ""},
		{"r instance history", principal("patient/Observation.r", "123", ""), Access{"history", "Observation"}, allow, cpt("123"), ""},
		{"r no search", principal("patient/Observation.r", "123", ""), Access{"search", "Observation"}, deny, nil, "patient/Observation.rs"},
		{"r no type history", principal("patient/Observation.r", "123", ""), Access{"history-type", "Observation"}, deny, nil, "patient/Observation.rs"},
		{"s type history", principal("patient/Observation.s", "123", ""), Access{"history-type", "Observation"}, allow, cpt("123"), ""},
		{"s no read", principal("patient/Observation.s", "123", ""), Access{"read", "Observation"}, deny, nil, "patient/Observation.rs"},
		{"other type", principal("patient/Observation.rs", "123", ""), Access{"read", "Condition"}, deny, nil, "patient/Condition.rs"},
		{"rs no create", principal("patient/Observation.rs", "123", ""), Access{"create", "Observation"}, deny, nil, "patient/Observation.c"},
		{"cu create", principal("patient/Observation.cu", "123", ""), Access{"create", "Observation"}, allow, cpt("123"), ""},
		{"cu patch", principal("patient/Observation.cu", "123", ""), Access{"patch", "Observation"}, allow, cpt("123"), ""},
		{"cu no delete", principal("patient/Observation.cu", "123", ""), Access{"delete", "Observation"}, deny, nil, "patient/Observation.d"},
		{"wildcard type", principal("patient/*.rs", "123", ""), Access{"search", "MedicationRequest"}, allow, cpt("123"), ""},
		{"unknown interaction", principal("patient/*.cruds", "123", ""), Access{"operation", "Observation"}, deny, nil, ""},
		{"bad type", principal("patient/*.cruds", "123", ""), Access{"read", "*"}, deny, nil, ""},
		{"no scopes", principal("openid fhirUser launch/patient", "123", ""), Access{"read", "Patient"}, deny, nil, "patient/Patient.rs"},

		// v1 mapping
		{"v1 read = rs: search", principal("patient/Observation.read", "123", ""), Access{"search", "Observation"}, allow, cpt("123"), ""},
		{"v1 read: no update", principal("patient/Observation.read", "123", ""), Access{"update", "Observation"}, deny, nil, "patient/Observation.u"},
		{"v1 write = cud: delete", principal("patient/Observation.write", "123", ""), Access{"delete", "Observation"}, allow, cpt("123"), ""},
		{"v1 write: no read", principal("patient/Observation.write", "123", ""), Access{"read", "Observation"}, deny, nil, "patient/Observation.rs"},
		{"v1 *", principal("patient/*.*", "123", ""), Access{"update", "Patient"}, allow, cpt("123"), ""},

		// patient/ context
		{"patient scope without patient claim", principal("patient/*.rs", "", ""), Access{"read", "Observation"}, deny, nil, "system/Observation.rs"},
		{"own Patient resource", principal("patient/Patient.rs", "123", ""), Access{"read", "Patient"}, allow, cpt("123"), ""},
		{"non-compartment type readable", principal("patient/*.rs", "123", ""), Access{"read", "Practitioner"}, allow, nil, ""},
		{"non-compartment type searchable", principal("patient/Organization.rs", "123", ""), Access{"search", "Organization"}, allow, nil, ""},
		{"non-compartment type not writable", principal("patient/*.cruds", "123", ""), Access{"update", "Practitioner"}, deny, nil, "patient/Practitioner.u"},
		{"non-compartment needs the type", principal("patient/Observation.rs", "123", ""), Access{"read", "Medication"}, deny, nil, "patient/Medication.rs"},
		{"clinician with patient scope", principal("patient/*.rs", "123", "Practitioner/9"), Access{"read", "Observation"}, allow, cpt("123"), ""},

		// user/ context by fhirUser
		{"practitioner unconstrained", principal("user/*.rs", "", "Practitioner/9"), Access{"search", "Observation"}, allow, nil, ""},
		{"practitioner role unconstrained", principal("user/Observation.cruds", "", "PractitionerRole/9"), Access{"create", "Observation"}, allow, nil, ""},
		{"practitioner scope still limits", principal("user/Observation.rs", "", "Practitioner/9"), Access{"create", "Observation"}, deny, nil, "user/Observation.c"},
		{"patient user own compartment", principal("user/*.rs", "", "Patient/55"), Access{"search", "Observation"}, allow, cpt("55"), ""},
		{"patient user non-compartment", principal("user/*.rs", "", "Patient/55"), Access{"read", "Location"}, allow, nil, ""},
		{"user scope without fhirUser", principal("user/*.rs", "", ""), Access{"read", "Observation"}, deny, nil, "system/Observation.rs"},
		{"user scope for Device user", principal("user/*.rs", "", "Device/1"), Access{"read", "Observation"}, deny, nil, "user/Observation.rs"},
		{"proxy must use DecideProxy", principal("user/*.rs patient/*.rs", "123", "RelatedPerson/7"), Access{"read", "Observation"}, deny, nil, ""},

		// system/
		{"system unconstrained", principal("system/*.rs", "", ""), Access{"search", "Observation"}, allow, nil, ""},
		{"system write", principal("system/Patient.cud", "", ""), Access{"delete", "Patient"}, allow, nil, ""},
		{"system no read with cud", principal("system/Patient.cud", "", ""), Access{"read", "Patient"}, deny, nil, "system/Patient.rs"},

		// union of scopes
		{"union: unconstrained wins", principal("patient/Observation.rs system/Observation.rs", "123", ""), Access{"read", "Observation"}, allow, nil, ""},
		{"union: two constraints Or",
			principal("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs", "123", ""),
			Access{"search", "Observation"}, allow,
			search.Or{Args: []search.Expr{
				search.And{Args: []search.Expr{cpt("123"), tok("category", "laboratory")}},
				search.And{Args: []search.Expr{cpt("123"), tok("category", "vital-signs")}},
			}}, ""},
		{"union: unconstrained query-less scope beats granular",
			principal("patient/Observation.rs?category=laboratory patient/Observation.rs", "123", ""),
			Access{"search", "Observation"}, allow, cpt("123"), ""},
		{"union: duplicates collapse", principal("patient/Observation.rs patient/*.read", "123", ""), Access{"read", "Observation"}, allow, cpt("123"), ""},
		{"union: user and patient", principal("user/Observation.rs patient/Observation.rs", "123", "Patient/55"), Access{"read", "Observation"}, allow,
			search.Or{Args: []search.Expr{cpt("55"), cpt("123")}}, ""},

		// granular scopes (finer-grained-resource-constraints-using-search-parameters)
		{"granular", principal("patient/Observation.rs?category=laboratory", "123", ""), Access{"search", "Observation"}, allow,
			search.And{Args: []search.Expr{cpt("123"), tok("category", "laboratory")}}, ""},
		{"granular system", principal("system/Observation.rs?category=laboratory", "", ""), Access{"search", "Observation"}, allow,
			tok("category", "laboratory"), ""},
		{"granular with failing query grants nothing", principal("patient/Observation.rs?bogus=1", "123", ""), Access{"search", "Observation"}, deny, nil, "patient/Observation.rs"},
	}
	d := testDecider()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := d.Decide(tt.p, tt.access)
			if got.Allow != tt.allow {
				t.Fatalf("Allow = %v, want %v (reason %q)", got.Allow, tt.allow, got.Reason)
			}
			if !reflect.DeepEqual(got.Where, tt.where) {
				t.Fatalf("Where = %#v, want %#v", got.Where, tt.where)
			}
			if got.Scope != tt.needScope {
				t.Fatalf("Scope = %q, want %q", got.Scope, tt.needScope)
			}
			if got.Reason == "" {
				t.Fatal("empty reason")
			}
		})
	}
}

func TestDecideNil(t *testing.T) {
	d := &Decider{}
	if d.Decide(nil, Access{Read, "Patient"}).Allow {
		t.Fatal("nil principal allowed")
	}
	// Without PatientFree every type is compartment-bound (fail closed).
	got := d.Decide(principal("patient/*.rs", "1", ""), Access{Read, "Practitioner"})
	if !got.Allow || !reflect.DeepEqual(got.Where, cpt("1")) {
		t.Fatalf("got %+v", got)
	}
	// Without CompileQuery granular scopes grant nothing.
	if got := d.Decide(principal("system/Observation.rs?category=x", "", ""), Access{Search, "Observation"}); got.Allow {
		t.Fatalf("granular scope without CompileQuery allowed: %+v", got)
	}
}
