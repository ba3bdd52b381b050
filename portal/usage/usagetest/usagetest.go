// Package usagetest reads what the usage service publishes, for tests:
// Prometheus metric families (a registry's Gather or the text exposition
// format of /metrics) and the scores of a MeasureReport (R4
// measurereport.html).
package usagetest

import (
	"fmt"
	"io"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ByName maps metric families (prometheus.Gatherer.Gather) by name.
func ByName(mfs []*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// Parse reads the Prometheus text exposition format (as /metrics serves
// it) into metric families by name.
func Parse(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(r)
}

// Sample is the value of the first sample of family name whose labels
// include every "k=v" of kv: a gauge's, a counter's or an untyped value,
// a histogram's sample count. ok is false when there is no such family
// or sample.
func Sample(mfs map[string]*dto.MetricFamily, name string, kv ...string) (v float64, ok bool) {
	mf := mfs[name]
	if mf == nil {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for _, p := range kv {
			k, v, _ := strings.Cut(p, "=")
			if labels[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

// Value is Sample's value; it fails the test when there is no such
// sample.
func Value(t testing.TB, mfs map[string]*dto.MetricFamily, name string, kv ...string) float64 {
	t.Helper()
	v, ok := Sample(mfs, name, kv...)
	if !ok {
		t.Fatalf("no sample %s%v", name, kv)
	}
	return v
}

// Scores maps each group of a MeasureReport (decoded JSON) to its
// measureScore.value, keyed by the group's first code
// (group.code.coding[0].code). A group without them is an error.
func Scores(mr map[string]any) (map[string]float64, error) {
	out := map[string]float64{}
	groups, _ := mr["group"].([]any)
	for i, g := range groups {
		gm, _ := g.(map[string]any)
		code, _ := gm["code"].(map[string]any)
		coding, _ := code["coding"].([]any)
		var c string
		if len(coding) > 0 {
			first, _ := coding[0].(map[string]any)
			c, _ = first["code"].(string)
		}
		score, _ := gm["measureScore"].(map[string]any)
		v, ok := score["value"].(float64)
		if c == "" || !ok {
			return nil, fmt.Errorf("MeasureReport.group[%d] has no code or no measureScore.value: %v", i, g)
		}
		out[c] = v
	}
	return out, nil
}
