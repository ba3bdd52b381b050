package app

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/fhir/server"
	"github.com/fhirgate/fhirgate/notify"
	"github.com/fhirgate/fhirgate/smart"
)

// The notification preferences of a person, as FHIR operations
// (operations.html; docs/notifications.md):
//
//	GET  [base]/Patient/[id]/$notification-preferences
//	GET  [base]/RelatedPerson/[id]/$notification-preferences
//	POST the same, with a Parameters body: message, result, reminder
//	     (valueBoolean), lang (valueCode en | fr); the parameters given
//	     are changed, the others kept.
//
// Both answer a Parameters resource with every kind's effective value
// and the language. Allowed to the person themselves (a patient-facing
// token whose fhirUser is that Patient or RelatedPerson, or a patient
// app in that patient's context) and to staff who may read the person
// (practitioners and backend services: e.g. opting a patient in at the
// front desk). A proxy cannot change the preferences of the patient they
// act for: they have their own, on their RelatedPerson.

// PrefKinds are the kinds a person opts in to.
var PrefKinds = []string{"message", "result", "reminder"}

const prefsOp = "$notification-preferences"

func (a *App) registerPrefsOps(st notify.Storage, def bool) {
	for _, typ := range []string{"Patient", "RelatedPerson"} {
		a.Server.RegisterOperation(server.ExtraOperation{Name: prefsOp, Type: typ,
			Definition: "http://fhirgate.dev/OperationDefinition/notification-preferences",
			Doc: "The person's notification opt-ins (message, result, reminder; lang): GET returns Parameters, POST sets them. " +
				"The person themselves, or staff (docs/notifications.md). Emails carry no health information.",
			Run: func(ctx context.Context, call server.OperationCall) (*fhir.Response, error) {
				r, err := prefsRun(ctx, st, def, a.Opt.Now, call)
				if err == nil && a.Notify != nil && a.Notify.Producer != nil && call.Request.Method == http.MethodPost {
					a.Notify.Producer.PrefsChanged(call.Resource.Key())
				}
				return r, err
			}})
	}
}

func prefsRun(ctx context.Context, st notify.Storage, def bool, now func() time.Time, call server.OperationCall) (*fhir.Response, error) {
	who := call.Resource.Key()
	if p := call.Principal; p != nil {
		patientScoped := slices.ContainsFunc(p.Scopes, func(s smart.Scope) bool { return s.Context == "patient" })
		switch {
		case isPerson(p.FHIRUser):
			if p.FHIRUser != who {
				return nil, fhir.Errorf(fhir.KindForbidden, "only %s (or staff) may see or change its notification preferences", who)
			}
		case p.FHIRUser == "" && patientScoped:
			if call.Resource.Type != "Patient" || p.Patient != call.Resource.ID {
				return nil, fhir.Errorf(fhir.KindForbidden, "only %s (or staff) may see or change its notification preferences", who)
			}
		}
	}
	prefs, _, err := st.Prefs(ctx, who)
	if err != nil {
		return nil, err
	}
	if call.Request.Method == http.MethodPost {
		if err := applyPrefs(&prefs, call.Request.Body); err != nil {
			return nil, err
		}
		prefs.Updated = now().UTC()
		if err := st.SetPrefs(ctx, who, prefs); err != nil {
			return nil, err
		}
	}
	params := []any{}
	for _, k := range PrefKinds {
		params = append(params, map[string]any{"name": k, "valueBoolean": prefs.OptedIn(k, def)})
	}
	if prefs.Lang != "" {
		params = append(params, map[string]any{"name": "lang", "valueCode": prefs.Lang})
	}
	b, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": params})
	return &fhir.Response{Status: http.StatusOK, Header: http.Header{}, Body: b}, nil
}

func applyPrefs(p *notify.Prefs, body []byte) error {
	var in struct {
		ResourceType string `json:"resourceType"`
		Parameter    []struct {
			Name         string `json:"name"`
			ValueBoolean *bool  `json:"valueBoolean"`
			ValueCode    string `json:"valueCode"`
		} `json:"parameter"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.ResourceType != "Parameters" {
		return fhir.Invalid("", "the body must be a Parameters resource")
	}
	for i, prm := range in.Parameter {
		at := "Parameters.parameter[" + strconv.Itoa(i) + "]"
		switch {
		case slices.Contains(PrefKinds, prm.Name):
			if prm.ValueBoolean == nil {
				return fhir.Invalid(at+".valueBoolean", "%s takes a valueBoolean", prm.Name)
			}
			if p.Kinds == nil {
				p.Kinds = map[string]bool{}
			}
			p.Kinds[prm.Name] = *prm.ValueBoolean
		case prm.Name == "lang":
			l := strings.ToLower(prm.ValueCode)
			if !slices.Contains(notify.Langs, l) {
				return fhir.Invalid(at+".valueCode", "lang must be one of %s", strings.Join(notify.Langs, ", "))
			}
			p.Lang = l
		default:
			return fhir.Invalid(at+".name", "unknown parameter %q (message, result, reminder, lang)", prm.Name)
		}
	}
	return nil
}

func isPerson(fhirUser string) bool {
	for _, t := range []string{"Patient/", "RelatedPerson/", "Person/"} {
		if strings.HasPrefix(fhirUser, t) {
			return true
		}
	}
	return false
}
