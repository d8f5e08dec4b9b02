// Package charttest renders charts/jitbot with Helm's own Go packages (no helm binary, no cluster) and checks
// the objects a kubelet and an API server would see: strictly decoded into the Kubernetes API types, with the
// security context, probes, disruption budget and Secret references asserted.
package charttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/telemetry"
)

const chartDir = "../../charts/jitbot"

// minimal is what a person must add to the chart's defaults: a policy and the name of the Secret.
var minimal = map[string]any{
	"existingSecret": "jitbot",
	"policy": `version: 1
defaults: {approval_channel: C0123APPROVALS}
providers:
  hook: {type: webhook, webhook: {url: "https://access.example.com/hook", secret_env: JITBOT_WEBHOOK_SECRET}}
identities: {U01ALICE: {hook: alice}}
roles:
  admin: {provider: hook, target: {x: y}, requesters: {users: [U01ALICE]}, approvers: {users: [U02BOB]}}
`,
}

func render(t *testing.T, values map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("load chart: %v", err)
	}
	vals, err := chartutil.ToRenderValues(ch, values, chartcommon.ReleaseOptions{Name: "jitbot", Namespace: "jitbot", IsInstall: true}, chartcommon.DefaultCapabilities)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	return engine.Render(ch, vals)
}

func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(chartDir, name))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

func merge(a, b map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

// objects splits the rendered manifests into documents and decodes each strictly into its API type: an
// unknown or misspelt field is an error, as `kubectl apply --validate=strict` would report.
type objects struct {
	deployment *appsv1.Deployment
	pdb        *policyv1.PodDisruptionBudget
	secrets    []*corev1.Secret
	kinds      []string
	rules      map[string]any
	configMaps []*corev1.ConfigMap
}

// configMap returns the rendered ConfigMap whose name ends in suffix.
func (o objects) configMap(t *testing.T, suffix string) *corev1.ConfigMap {
	t.Helper()
	for _, cm := range o.configMaps {
		if strings.HasSuffix(cm.Name, suffix) {
			return cm
		}
	}
	t.Fatalf("no ConfigMap named *%s rendered", suffix)
	return nil
}

func decode(t *testing.T, out map[string]string) objects {
	t.Helper()
	var o objects
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range strings.Split(out[name], "\n---") {
			if strings.TrimSpace(strings.ReplaceAll(doc, "---", "")) == "" {
				continue
			}
			js, err := sigsyaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: not YAML: %v\n%s", name, err, doc)
			}
			var head struct{ Kind, APIVersion string }
			if err := json.Unmarshal(js, &head); err != nil || head.Kind == "" {
				if string(js) == "null" {
					continue
				}
				t.Fatalf("%s: no kind: %v\n%s", name, err, doc)
			}
			o.kinds = append(o.kinds, head.Kind)
			var target any
			switch head.Kind {
			case "Deployment":
				o.deployment = &appsv1.Deployment{}
				target = o.deployment
			case "PodDisruptionBudget":
				o.pdb = &policyv1.PodDisruptionBudget{}
				target = o.pdb
			case "Secret":
				s := &corev1.Secret{}
				o.secrets = append(o.secrets, s)
				target = s
			case "ConfigMap":
				cm := &corev1.ConfigMap{}
				o.configMaps = append(o.configMaps, cm)
				target = cm
			case "Service":
				target = &corev1.Service{}
			case "ServiceAccount":
				target = &corev1.ServiceAccount{}
			case "PersistentVolumeClaim":
				target = &corev1.PersistentVolumeClaim{}
			case "Ingress":
				target = &networkingv1.Ingress{}
			case "NetworkPolicy":
				target = &networkingv1.NetworkPolicy{}
			case "ServiceMonitor":
				continue // a CRD: no Go type here; its shape is checked by the Prometheus Operator
			case "PrometheusRule":
				var pr struct {
					Spec map[string]any `json:"spec"`
				}
				if err := json.Unmarshal(js, &pr); err != nil {
					t.Fatal(err)
				}
				o.rules = pr.Spec
				continue
			default:
				t.Fatalf("%s: unexpected kind %s", name, head.Kind)
			}
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(target); err != nil {
				t.Fatalf("%s: %s does not decode strictly into %T: %v\n%s", name, head.Kind, target, err, doc)
			}
		}
	}
	return o
}

func TestDefaultValuesRequirePolicyAndSecret(t *testing.T) {
	_, err := render(t, nil)
	if err == nil || !strings.Contains(err.Error(), "values.policy is required") || !strings.Contains(err.Error(), "jitbot policy check") {
		t.Fatalf("rendering the bare defaults: got %v, want a clear 'values.policy is required' failure", err)
	}
	_, err = render(t, map[string]any{"policy": minimal["policy"]})
	if err == nil || !strings.Contains(err.Error(), "values.existingSecret is required") {
		t.Fatalf("without existingSecret: got %v", err)
	}
}

func TestDefaultsWithPolicy(t *testing.T) {
	out, err := render(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, out)
	d := o.deployment
	if d == nil {
		t.Fatal("no Deployment rendered")
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("embedded store: replicas %d strategy %q, want 1 and Recreate", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	checkPod(t, d)
	if o.pdb != nil {
		t.Error("a PodDisruptionBudget for a single replica blocks every node drain")
	}
	if !slices.Contains(o.kinds, "PersistentVolumeClaim") {
		t.Error("the embedded store needs its volume")
	}
	if env(d, "JITBOT_REDIS_URL") != nil {
		t.Error("no Redis configured, yet JITBOT_REDIS_URL is set")
	}
	// The policy reaches the pod verbatim and is valid.
	if _, err := policy.Parse("policy.yaml", []byte(o.configMap(t, "-policy").Data["policy.yaml"])); err != nil {
		t.Fatalf("the rendered policy does not parse: %v", err)
	}
}

func TestSeveralReplicasNeedRedis(t *testing.T) {
	_, err := render(t, merge(minimal, map[string]any{"replicaCount": 2}))
	if err == nil || !strings.Contains(err.Error(), "split brain") {
		t.Fatalf("2 replicas without Redis rendered (err %v): each would run its own store and sweeper", err)
	}
	out, err := render(t, merge(minimal, map[string]any{"replicaCount": 2, "redis": map[string]any{"url": "redis://:s3cret@redis:6379/0"}}))
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, out)
	ref := env(o.deployment, "JITBOT_REDIS_URL")
	if ref == nil || ref.ValueFrom == nil || ref.ValueFrom.SecretKeyRef == nil || ref.Value != "" {
		t.Fatalf("JITBOT_REDIS_URL must come from a Secret, got %+v", ref)
	}
	found := false
	for _, s := range o.secrets {
		if s.Name == ref.ValueFrom.SecretKeyRef.Name && s.StringData[ref.ValueFrom.SecretKeyRef.Key] == "redis://:s3cret@redis:6379/0" {
			found = true
		}
	}
	if !found {
		t.Fatalf("the Secret %s/%s holding the Redis URL is not rendered", ref.ValueFrom.SecretKeyRef.Name, ref.ValueFrom.SecretKeyRef.Key)
	}
	if strings.Contains(fmt.Sprint(o.deployment.Spec.Template), "s3cret") {
		t.Fatal("the Redis password appears in the pod spec")
	}
	if o.pdb == nil || o.pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Fatalf("several replicas need a PodDisruptionBudget, got %+v", o.pdb)
	}
}

func TestFullExample(t *testing.T) {
	out, err := render(t, valuesFile(t, "values-example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	o := decode(t, out)
	d := o.deployment
	checkPod(t, d)
	for _, k := range []string{"Ingress", "NetworkPolicy", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "ServiceAccount"} {
		if !slices.Contains(o.kinds, k) {
			t.Errorf("the full example renders no %s", k)
		}
	}
	if slices.Contains(o.kinds, "PersistentVolumeClaim") {
		t.Error("Redis is configured, yet a volume for the embedded store is rendered")
	}
	ref := env(d, "JITBOT_REDIS_URL")
	if ref == nil || ref.ValueFrom.SecretKeyRef.Name != "jitbot" || ref.ValueFrom.SecretKeyRef.Key != "JITBOT_REDIS_URL" {
		t.Fatalf("JITBOT_REDIS_URL from the existing Secret's key, got %+v", ref)
	}
	if e := env(d, "JITBOT_EXPECTED_REPLICAS"); e == nil || e.Value != "3" {
		t.Errorf("JITBOT_EXPECTED_REPLICAS = %+v, want 3", e)
	}
	if len(d.Spec.Template.Spec.ImagePullSecrets) != 1 || len(d.Spec.Template.Spec.TopologySpreadConstraints) != 1 {
		t.Error("imagePullSecrets and topologySpreadConstraints are not passed through")
	}
	if o.rules == nil {
		t.Fatal("no PrometheusRule spec")
	}
	if _, err := policy.Parse("policy.yaml", []byte(o.configMap(t, "-policy").Data["policy.yaml"])); err != nil {
		t.Fatalf("the example's policy does not parse: %v", err)
	}
	dash := o.configMap(t, "-dashboard")
	var board struct{ Panels []any }
	if err := json.Unmarshal([]byte(dash.Data["jitbot.json"]), &board); err != nil || len(board.Panels) == 0 {
		t.Fatalf("the dashboard ConfigMap does not hold the dashboard JSON: %v", err)
	}
	if dash.Labels["grafana_dashboard"] != "1" {
		t.Errorf("the dashboard ConfigMap lacks the Grafana sidecar label: %v", dash.Labels)
	}
	notes := out["jitbot/templates/NOTES.txt"]
	if !strings.Contains(notes, "https://jitbot.example.com/slack/commands") {
		t.Errorf("NOTES.txt does not give the request URLs:\n%s", notes)
	}
}

// checkPod asserts what the kubelet and a restricted Pod Security admission need, and the probes.
func checkPod(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	ps := d.Spec.Template.Spec.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 || ps.RunAsGroup == nil || ps.FSGroup == nil {
		t.Fatalf("pod security context %+v: runAsNonRoot needs a numeric runAsUser (the kubelet cannot verify a named user), plus runAsGroup and fsGroup", ps)
	}
	if *ps.RunAsUser != imageUser(t) {
		t.Errorf("chart runAsUser %d differs from the Dockerfile's USER %d", *ps.RunAsUser, imageUser(t))
	}
	all := append(slices.Clone(d.Spec.Template.Spec.InitContainers), d.Spec.Template.Spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, corev1.Capability("ALL")) {
			t.Errorf("container %s security context %+v", c.Name, sc)
		}
	}
	if len(d.Spec.Template.Spec.InitContainers) != 1 || !slices.Equal(d.Spec.Template.Spec.InitContainers[0].Args, []string{"policy", "check", "/etc/jitbot/policy.yaml"}) {
		t.Errorf("the policy is not checked by an init container: %+v", d.Spec.Template.Spec.InitContainers)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("probes: readiness %+v liveness %+v", c.ReadinessProbe, c.LivenessProbe)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "jitbot" {
		t.Errorf("secrets must come from the existing Secret: %+v", c.EnvFrom)
	}
	for _, e := range c.Env {
		if strings.Contains(e.Name, "TOKEN") || strings.Contains(e.Name, "SECRET") {
			t.Errorf("secret-like variable %s rendered into the pod spec", e.Name)
		}
	}
}

var userLine = regexp.MustCompile(`(?m)^USER\s+(\d+)(?::(\d+))?\s*$`)

func imageUser(t *testing.T) int64 {
	t.Helper()
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := userLine.FindSubmatch(raw)
	if m == nil {
		t.Fatal("the Dockerfile has no numeric USER line: the kubelet cannot verify runAsNonRoot for a named user")
	}
	var n int64
	fmt.Sscan(string(m[1]), &n)
	return n
}

func env(d *appsv1.Deployment, name string) *corev1.EnvVar {
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return &e
		}
	}
	return nil
}

// TestAlertRulesUseExistingMetrics: every jitbot_* series an alert rule reads is one jitbot exports.
func TestAlertRulesUseExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "files/alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	series := regexp.MustCompile(`\bjitbot_[a-z_]+`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			n++
			for _, m := range series.FindAllString(r.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suf); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("alert %s uses %s, which jitbot does not export (exported: %v)", r.Alert, m, keys(exported))
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no alert rules found")
	}
}

// TestDashboardUsesExistingMetrics: every jitbot_* series a dashboard panel queries is one jitbot exports,
// and the dashboard covers what an operator looks at first.
func TestDashboardUsesExistingMetrics(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(chartDir, "files/dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var board struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &board); err != nil {
		t.Fatal(err)
	}
	exported := exportedMetrics(t)
	series := regexp.MustCompile(`\bjitbot_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range board.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range series.FindAllString(tg.Expr, -1) {
				base := m
				for _, suf := range []string{"_bucket", "_count", "_sum"} {
					if b, ok := strings.CutSuffix(m, suf); ok && exported[b] {
						base = b
					}
				}
				if !exported[base] {
					t.Errorf("panel %q uses %s, which jitbot does not export", p.Title, m)
				}
				used[base] = true
			}
		}
	}
	for _, want := range []string{"jitbot_requests_total", "jitbot_request_decision_seconds", "jitbot_grants", "jitbot_revocation_lag_seconds",
		"jitbot_revoke_failed_total", "jitbot_slack_api_calls_total", "jitbot_sweep_duration_seconds", "jitbot_sweeper_leader"} {
		if !used[want] {
			t.Errorf("the dashboard shows nothing of %s", want)
		}
	}
}

// exportedMetrics lists the metric names jitbot declares: every `Name: "jitbot_..."` in a collector's options
// in the non-test Go sources, plus, as a check that the scan finds real collectors, what telemetry.New
// registers (read from the collectors' descriptors: a vector with no samples gathers nothing, but it
// describes itself).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{Registry: prometheus.NewRegistry()}
	telemetry.New(rec, func(context.Context, store.GrantState) (int, error) { return 0, nil })
	telemetry.NewAuditMetrics(rec)
	declared := map[string]bool{}
	decl := regexp.MustCompile(`Name:\s*"(jitbot_[a-z0-9_]+)"`)
	err := filepath.WalkDir("../..", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllSubmatch(raw, -1) {
			declared[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for name := range rec.names {
		if !declared[name] {
			t.Fatalf("telemetry registers %s, but the source scan did not find it: the scan is broken", name)
		}
	}
	return declared
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type recorder struct {
	*prometheus.Registry
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	if r.names == nil {
		r.names = map[string]bool{}
	}
	for _, c := range cs {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			if m := fqName.FindStringSubmatch(d.String()); m != nil {
				r.names[m[1]] = true
			}
		}
	}
	r.Registry.MustRegister(cs...)
}
