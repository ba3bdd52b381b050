// Package validate checks FHIR R4 resources in JSON form against the official
// R4 JSON schema (json.html#schema) and the FHIR JSON rules the schema cannot
// express (json.html): no duplicate properties, no null / "" / {} / [],
// aligned primitive arrays, bounded nesting. Each resource, contained ones
// included, is checked against #/definitions/<its type>, never the root oneOf.
//
// Every problem becomes one issue of a *fhir.Error (KindInvalid, 400) whose
// expression is a FHIRPath-like location such as "Observation.component[1].code".
package validate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// MaxIssues caps the issues of one error; the rest are counted in a final
// informational issue.
const MaxIssues = 20

// Validator validates resources. The zero value is not usable; call New.
// It is safe for concurrent use. Schemas are compiled per resource type on
// first use (a few milliseconds each) or ahead of time by Warm.
type Validator struct {
	mu       sync.Mutex // guards compiler, which is not safe for concurrent use
	compiler *jsonschema.Compiler
	schemas  sync.Map // resource type -> *jsonschema.Schema
}

// New loads the embedded R4 schema. It compiles nothing, so it is fast (tens
// of milliseconds); see Warm.
func New() (*Validator, error) {
	doc, err := loadSchema()
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft6)
	c.RegisterFormat(&jsonschema.Format{Name: fhirDateFormat, Validate: checkCalendarDate})
	if err := c.AddResource(SchemaID, doc); err != nil {
		return nil, fmt.Errorf("validate: add schema: %w", err)
	}
	return &Validator{compiler: c}, nil
}

// Warm compiles the schema of every resource type, so no request pays for a
// first compile. It stops early when ctx is done. Run it in a goroutine at
// start-up; Validate works meanwhile (a type not yet compiled is compiled on
// demand).
func (v *Validator) Warm(ctx context.Context) {
	for _, t := range fhir.ResourceTypes {
		if ctx.Err() != nil {
			return
		}
		_, _ = v.schema(t)
	}
}

// schema returns the compiled schema of resource type t.
func (v *Validator) schema(t string) (*jsonschema.Schema, error) {
	if s, ok := v.schemas.Load(t); ok {
		return s.(*jsonschema.Schema), nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.schemas.Load(t); ok {
		return s.(*jsonschema.Schema), nil
	}
	s, err := v.compiler.Compile(SchemaID + "#/definitions/" + t)
	if err != nil {
		return nil, fmt.Errorf("validate: compile schema of %s: %w", t, err)
	}
	v.schemas.Store(t, s)
	return s, nil
}

// Validate checks raw, the JSON of one resource. resourceType is the type
// the caller expects (from the URL); when empty, the resource's own
// resourceType is used. It returns nil or a *fhir.Error of KindInvalid
// with one issue per problem (at most MaxIssues, sorted by expression).
func (v *Validator) Validate(resourceType string, raw []byte) error {
	doc, dups, err := fhir.ParseJSON(raw)
	if err != nil {
		var se *fhir.SyntaxError
		if errors.As(err, &se) {
			return se.Outcome(rootName(resourceType, nil))
		}
		return fhir.Errorf(fhir.KindInvalid, "invalid JSON").Wrap(err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return fhir.Invalid("", "a resource must be a JSON object, not %s", fhir.JSONKind(doc)).WithCode("structure")
	}
	return v.validate(resourceType, obj, dups)
}

// ValidateObject is Validate of an already parsed resource (fhir.ParseObject),
// so a write parses its body once.
func (v *Validator) ValidateObject(resourceType string, o *fhir.Object) error {
	return v.validate(resourceType, o.Tree(), o.Duplicates())
}

func (v *Validator) validate(resourceType string, obj map[string]any, dupAt []path) error {
	dups := make([]problem, len(dupAt))
	for i, at := range dupAt {
		dups[i] = problem{at: at, code: "structure", msg: fmt.Sprintf("duplicate property %q in one JSON object", at[len(at)-1].Key)}
	}
	r := &run{v: v, root: obj, problems: dups}
	nested := r.checkStructure(obj, nil)
	if err := r.resource(obj, nil, resourceType, false); err != nil {
		return err
	}
	for _, n := range nested {
		if err := r.resource(n.obj, n.at, "", n.contained); err != nil {
			return err
		}
	}
	return r.result(rootName(resourceType, obj))
}

// rootName is the first step of every expression: the expected type, else
// the resource's own type when it is a known one, else "Resource".
func rootName(expected string, obj map[string]any) string {
	if expected != "" {
		return expected
	}
	if t, ok := obj["resourceType"].(string); ok && fhir.IsResourceType(t) {
		return t
	}
	return "Resource"
}

// run collects the problems of one Validate call.
type run struct {
	v        *Validator
	root     map[string]any
	problems []problem
	// structuralAt holds the paths (rendered without root) the structure
	// check reported, so a secondary report of the same spot is dropped.
	structuralAt map[string]bool
}

func (r *run) add(at path, code, format string, args ...any) {
	r.problems = append(r.problems, problem{at: at, code: code, msg: fmt.Sprintf(format, args...)})
}

// addSecondary adds a problem that is dropped when the structure check
// already reported the same location.
func (r *run) addSecondary(at path, code, format string, args ...any) {
	r.problems = append(r.problems, problem{at: at, code: code, msg: fmt.Sprintf(format, args...), secondary: true})
}

// resource checks one resource (the root, or one found in contained,
// Bundle.entry.resource, ... at path at) against the schema of its type.
// An error return is an internal failure, not a validation finding.
func (r *run) resource(obj map[string]any, at path, expected string, contained bool) error {
	rtAt := at.Key("resourceType")
	rv, ok := obj["resourceType"]
	if !ok {
		r.add(rtAt, "required", "resourceType is missing; every resource names its type (json.html#resources)")
		return nil
	}
	rt, ok := rv.(string)
	if !ok {
		r.addSecondary(rtAt, "value", "resourceType must be a JSON string, not %s", fhir.JSONKind(rv))
		return nil
	}
	if !fhir.IsResourceType(rt) {
		r.addSecondary(rtAt, "value", "%q is not an R4 resource type", rt)
		return nil
	}
	if expected != "" && rt != expected {
		r.add(rtAt, "value", "resourceType %q does not match the expected type %q", rt, expected)
		return nil
	}
	if contained {
		// dom-2: "If the resource is contained in another resource, it SHALL
		// NOT contain nested Resources" (references.html#contained).
		if _, ok := obj["contained"]; ok {
			r.add(at.Key("contained"), "invariant", "a contained resource must not contain other resources (dom-2)")
		}
	}
	s, err := r.v.schema(rt)
	if err != nil {
		return fhir.AsError(err)
	}
	if err := s.Validate(any(obj)); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return fhir.AsError(fmt.Errorf("validate: %s: %w", rt, err))
		}
		r.schemaProblems(ve, obj, at)
	}
	return nil
}

// result turns the problems into nil or a *fhir.Error.
func (r *run) result(root string) error {
	if len(r.problems) == 0 {
		return nil
	}
	type rendered struct {
		expr string
		p    problem
	}
	seen := map[string]bool{}
	out := make([]rendered, 0, len(r.problems))
	for _, p := range r.problems {
		expr := p.at.Render(root)
		if p.secondary && r.structuralAt[p.at.Render("")] {
			continue // already reported, in plainer words, by the structure check
		}
		key := expr + "\x00" + p.msg
		if seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, rendered{expr, p})
	}
	slices.SortStableFunc(out, func(a, b rendered) int {
		if c := comparePath(a.p.at, b.p.at); c != 0 {
			return c
		}
		if a.p.msg < b.p.msg {
			return -1
		}
		if a.p.msg > b.p.msg {
			return 1
		}
		return 0
	})
	fe := &fhir.Error{Kind: fhir.KindInvalid}
	for i, o := range out {
		if i == MaxIssues {
			fe.Issues = append(fe.Issues, fhir.Issue{
				Severity:    "information",
				Code:        "informational",
				Diagnostics: fmt.Sprintf("%d more problems not listed", len(out)-MaxIssues),
			})
			break
		}
		fe.Issues = append(fe.Issues, fhir.Issue{
			Severity:    "error",
			Code:        o.p.code,
			Diagnostics: o.p.msg,
			Expression:  []string{o.expr},
		})
	}
	return fe
}

// comparePath orders paths as they appear in a document: array items by
// index, properties by name, a parent before its children.
func comparePath(a, b path) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		x, y := a[i], b[i]
		switch {
		case x.Index >= 0 && y.Index >= 0:
			if x.Index != y.Index {
				return x.Index - y.Index
			}
		case x.Index >= 0:
			return -1
		case y.Index >= 0:
			return 1
		case x.Key != y.Key:
			if x.Key < y.Key {
				return -1
			}
			return 1
		}
	}
	return len(a) - len(b)
}
