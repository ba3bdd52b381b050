package app

// eConsult / eReferral and record-correction Tasks (portal/workflow,
// docs/workflow.md): the Task write hook (state machine, owner and
// requester rules, patients' correction requests), Task/[id]/$withdraw,
// and the worklist search parameters.

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/fhirgate/fhirgate/fhir/search"
	"github.com/fhirgate/fhirgate/portal/workflow"
)

// startWorkflow registers the Task write hook and $withdraw.
func (a *App) startWorkflow(ctx context.Context, extra map[string]http.Handler) error {
	o := a.Opt.Workflow
	svc, err := workflow.New(workflow.Config{
		Store: a.Store, Base: a.Opt.BaseURL, Visible: a.Server.Visible,
		HandleAsService: a.Server.HandleAsService, Handle: a.Server.Handle,
		OnlyWorkflowTasks: o.OnlyWorkflowTasks, NoPatientCorrections: o.NoPatientCorrections, Now: a.Opt.Now,
	})
	if err != nil {
		return err
	}
	a.register("Task", svc.Hook, svc.Operations())
	return nil
}

// WorkflowOptions configure the Task workflow (Options.Workflow).
type WorkflowOptions struct {
	// OnlyWorkflowTasks (FHIRGATE_WORKFLOW_ALL_TASKS=false): the Task state
	// machine and the owner/requester rules apply only to eConsult,
	// eReferral and correction Tasks (e.g. while an EMR loads its existing
	// Tasks in any state); by default they apply to every Task.
	OnlyWorkflowTasks bool
	// NoPatientCorrections (FHIRGATE_WORKFLOW_CORRECTIONS=false): patients
	// and proxies may not create correction requests.
	NoPatientCorrections bool
}

// WorkflowFromEnv reads WorkflowOptions from the environment.
func WorkflowFromEnv(getenv func(string) string) (WorkflowOptions, error) {
	var o WorkflowOptions
	for _, b := range []struct {
		name string
		to   *bool
	}{{"FHIRGATE_WORKFLOW_ALL_TASKS", &o.OnlyWorkflowTasks}, {"FHIRGATE_WORKFLOW_CORRECTIONS", &o.NoPatientCorrections}} {
		if v := getenv(b.name); v != "" {
			on, err := strconv.ParseBool(v)
			if err != nil {
				return o, fmt.Errorf("%s: %q is not true or false", b.name, v)
			}
			*b.to = !on
		}
	}
	return o, nil
}

// withWorkflowParams adds the worklist search parameters: Task "due"
// (restriction.period.end) and ServiceRequest "supporting-info".
func withWorkflowParams(reg *search.Registry) (*search.Registry, error) {
	return workflow.WithParams(reg)
}
