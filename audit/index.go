package audit

import (
	"time"

	"github.com/fhirgate/fhirgate/fhir/search"
)

// BuildIndexed is BuildVersion with the search values of the AuditEvent
// made from the event directly (search.Builder) instead of by evaluating
// every AuditEvent search parameter over its decoded form: the writer
// stores one AuditEvent per request. The Builder must come from a registry
// whose AuditEvent parameters are the default ones (search.SameParams);
// TestIndexEqualsExtract checks the values equal Extract's.
func BuildIndexed(e Event, id string, lastUpdated time.Time, b *search.Builder) ([]byte, search.Index) {
	raw, ae := buildEvent(e, id, lastUpdated)
	return raw, ae.index(b)
}

// index adds the values of each AuditEvent search parameter
// (auditevent.html#search) in parameter code order, in the order each
// expression selects them.
func (a *auditEvent) index(b *search.Builder) search.Index {
	if a.Meta != nil {
		for _, p := range a.Meta.Profile {
			b.URI("_profile", p) // Resource.meta.profile
		}
		for _, c := range a.Meta.Security {
			b.Coding("_security", c.System, c.Code, c.Display) // Resource.meta.security
		}
	}
	b.Code("action", a.Action)
	for i := range a.Agent {
		if n := a.Agent[i].Network; n != nil {
			b.String("address", n.Address) // AuditEvent.agent.network.address
		}
	}
	for i := range a.Agent {
		addRef(b, "agent", a.Agent[i].Who) // AuditEvent.agent.who
	}
	for i := range a.Agent {
		b.String("agent-name", a.Agent[i].Name)
	}
	b.DateTime("date", a.Recorded) // AuditEvent.recorded
	for i := range a.Entity {
		addRef(b, "entity", a.Entity[i].What)
	}
	for i := range a.Entity {
		b.String("entity-name", a.Entity[i].Name)
	}
	for i := range a.Entity {
		if r := a.Entity[i].Role; r != nil {
			b.Coding("entity-role", r.System, r.Code, r.Display)
		}
	}
	for i := range a.Entity {
		t := a.Entity[i].Type
		b.Coding("entity-type", t.System, t.Code, t.Display)
	}
	b.Code("outcome", a.Outcome)
	// AuditEvent.agent.who.where(resolve() is Patient) |
	// AuditEvent.entity.what.where(resolve() is Patient)
	for i := range a.Agent {
		if w := a.Agent[i].Who; w != nil && b.ResolvesTo(w.Reference, "Patient") {
			addRef(b, "patient", w)
		}
	}
	for i := range a.Entity {
		if w := a.Entity[i].What; w != nil && b.ResolvesTo(w.Reference, "Patient") {
			addRef(b, "patient", w)
		}
	}
	addRef(b, "source", &a.Source.Observer)
	for i := range a.Subtype {
		c := a.Subtype[i]
		b.Coding("subtype", c.System, c.Code, c.Display)
	}
	b.Coding("type", a.Type.System, a.Type.Code, a.Type.Display)
	idx := b.Index()
	if a.Meta != nil {
		for _, c := range a.Meta.Security {
			idx.Security = append(idx.Security, c.System+"|"+c.Code)
		}
	}
	return idx
}

func addRef(b *search.Builder, code string, r *reference) {
	if r == nil {
		return
	}
	var sys, val string
	if r.Identifier != nil {
		sys, val = r.Identifier.System, r.Identifier.Value
	}
	b.Reference(code, r.Reference, sys, val)
}
