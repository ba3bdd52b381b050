package authz

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/smart"
	"github.com/fhirgate/fhirgate/store"
)

// The patient picker offers exactly the patients the resource server
// would let this user act for: a Patient themselves; a RelatedPerson (or
// a Person linked to RelatedPersons) the patients of smart.Grants — the
// children under the proxy age limit by birthDate, and the patients whose
// active patient-privacy Consent names them, within its period. A child
// who turned 12 is not offered (they may have their own account); a
// withdrawn Consent removes its patient at once.

type choice struct {
	ID        string
	Name      string
	BirthDate string
	Via       string   // "self", smart.ViaRelationship or smart.ViaConsent
	Until     string   // the day access ends (YYYY-MM-DD), "" open-ended
	Types     []string // a Consent's resource types; nil: all
	Sensitive bool     // sensitive records are shared too
}

type pickerData struct {
	App     string
	Choices []choice
}

func (s *Server) choices(ctx context.Context, fhirUser string) ([]choice, error) {
	if id, ok := strings.CutPrefix(fhirUser, "Patient/"); ok {
		ch := choice{ID: id, Via: "self", Sensitive: true}
		s.describePatient(ctx, &ch)
		return []choice{ch}, nil
	}
	if !isProxy(fhirUser) {
		return nil, nil
	}
	gs, err := smart.Grants(ctx, s.cfg.FHIR, s.proxyConfig(), fhirUser)
	if err != nil {
		return nil, err
	}
	var out []choice
	for _, g := range gs {
		if i := slices.IndexFunc(out, func(c choice) bool { return c.ID == g.Patient }); i >= 0 {
			// Several grants for one patient: the widest wins for display.
			if g.Types == nil {
				out[i].Types = nil
			}
			out[i].Sensitive = out[i].Sensitive || g.Sensitive
			if g.Via == smart.ViaRelationship {
				out[i].Via = g.Via
			}
			continue
		}
		ch := choice{ID: g.Patient, Via: g.Via, Types: g.Types, Sensitive: g.Sensitive}
		if !g.Until.IsZero() {
			ch.Until = g.Until.Add(-time.Nanosecond).Format("2006-01-02")
		}
		s.describePatient(ctx, &ch)
		out = append(out, ch)
	}
	return out, nil
}

type patientJSON struct {
	BirthDate string `json:"birthDate"`
	Name      []struct {
		Use    string   `json:"use"`
		Text   string   `json:"text"`
		Family string   `json:"family"`
		Given  []string `json:"given"`
	} `json:"name"`
}

func (s *Server) readPatient(ctx context.Context, id string) (*patientJSON, bool) {
	rec, err := s.cfg.FHIR.Read(ctx, "Patient", id)
	if err != nil || rec.Deleted || len(rec.Raw) == 0 {
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.cfg.Logger.WarnContext(ctx, "authz: read patient", "id", id, "err", err)
		}
		return nil, false
	}
	var p patientJSON
	if json.Unmarshal(rec.Raw, &p) != nil {
		return nil, false
	}
	return &p, true
}

func (p *patientJSON) display() string {
	for _, n := range p.Name {
		if n.Use == "official" || n.Use == "usual" || n.Use == "" {
			if n.Text != "" {
				return n.Text
			}
			if s := strings.TrimSpace(strings.Join(append(slices.Clone(n.Given), n.Family), " ")); s != "" {
				return s
			}
		}
	}
	return ""
}

func (s *Server) describePatient(ctx context.Context, ch *choice) {
	ch.Name = "Patient/" + ch.ID
	if p, ok := s.readPatient(ctx, ch.ID); ok {
		if n := p.display(); n != "" {
			ch.Name = n
		}
		ch.BirthDate = p.BirthDate
	}
}

// patientName is the display name of a patient ("Patient/id" if unknown).
func (s *Server) patientName(ctx context.Context, id string) string {
	ch := choice{ID: id}
	s.describePatient(ctx, &ch)
	return ch.Name
}
