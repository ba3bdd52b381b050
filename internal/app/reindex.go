package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fhirgate/fhirgate/fhir"
	"github.com/fhirgate/fhirgate/policy"
	"github.com/fhirgate/fhirgate/store"
)

// Reindex re-extracts the search values of every current version (after the
// search definitions change) and, with release, recomputes its release state
// under the active policy. A clinician's $release or $hold is kept; every
// other state follows the new rules (a new exclusion hides data at once).
func (a *App) Reindex(ctx context.Context, release bool) (int, error) {
	n := 0
	err := a.Store.ForEach(ctx, "", func(r store.Record) error {
		m, err := fhir.Decode(r.Raw)
		if err != nil {
			return fmt.Errorf("reindex %s: %w", r.Key(), err)
		}
		var prev *store.Release
		if r.Release.State == policy.StateReleased || r.Release.State == policy.StateHeld {
			p := r.Release
			prev = &p
		}
		idx, nr, err := a.Server.Derive(ctx, r.Type, m, r.LastUpdated, prev)
		if err != nil {
			return fmt.Errorf("reindex %s: %w", r.Key(), err)
		}
		var rel *store.Release
		if release {
			rel = &nr
		}
		n++
		return a.Store.SetDerived(ctx, r.Type, r.ID, r.VersionID, &idx, rel)
	})
	return n, err
}

// policyStateFile remembers which policy the stored release states follow.
const policyStateFile = "release-policy.hash"

// applyPolicyIfChanged recomputes release states at start-up when the
// policy differs from the one they were computed with.
func (a *App) applyPolicyIfChanged(ctx context.Context) error {
	hash := a.Server.Policy().Hash()
	file := filepath.Join(a.Opt.DataDir, policyStateFile)
	if old, err := os.ReadFile(file); err == nil && strings.TrimSpace(string(old)) == hash {
		return nil
	} else if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("release policy state: %w", err)
	}
	n, err := a.Reindex(ctx, true)
	if err != nil {
		return fmt.Errorf("apply release policy: %w", err)
	}
	if n > 0 {
		a.Opt.Logger.Info("release policy changed: release states recomputed", "resources", n, "hash", hash)
	}
	if err := os.MkdirAll(a.Opt.DataDir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(hash+"\n"), 0o600)
}
