package kube_test

// Tests against a REAL kube-apiserver with RBAC (scripts/kube-apiserver-test.sh, `make test-kube`), the envtest
// way: the script builds etcd and kube-apiserver, starts them on loopback and sets JITBOT_TEST_KUBE_APISERVER to
// an admin kubeconfig. The bot runs as the ServiceAccount jitbot/jitbot with exactly the least-privilege RBAC
// of docs/providers/kubernetes.md (applied from the doc itself, so the doc cannot drift from what is tested),
// through a small fault-injecting proxy so that the shared provider suite can inject 429/409/404/403/500
// answers and latency in front of the real server.

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube"
	"github.com/jitbot/jitbot/grants/providertest"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	rbacclient "k8s.io/client-go/kubernetes/typed/rbac/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// EnvKubeAPIServer names the admin kubeconfig of the real API server the opt-in tests run against.
const EnvKubeAPIServer = "JITBOT_TEST_KUBE_APISERVER"

// realCluster is the real API server, set up once per test binary.
type realCluster struct {
	admin     *rest.Config
	adminHTTP *http.Client
	rbac      rbacclient.RbacV1Interface
	botToken  string
	proxy     *faultProxy
}

var (
	clusterOnce sync.Once
	cluster     *realCluster
	clusterErr  error
)

// needAPIServer skips (only in the opt-in target's absence) or returns the set-up cluster.
func needAPIServer(t *testing.T) *realCluster {
	t.Helper()
	path := os.Getenv(EnvKubeAPIServer)
	if path == "" {
		t.Skipf("no real kube-apiserver: %s is not set; run `make test-kube` (scripts/kube-apiserver-test.sh) to build and start one", EnvKubeAPIServer)
	}
	clusterOnce.Do(func() {
		cluster, clusterErr = setUpCluster(path, documentedRBAC(t))
		if clusterErr == nil {
			// The RBAC authorizer sees new bindings through an informer cache: wait until the documented
			// rules are in force for the bot.
			for _, p := range []accessProbe{{"create", "clusterrolebindings", "", ""}, {"bind", "clusterroles", "edit", ""}, {"bind", "roles", "debugger", "payments"}} {
				cluster.waitAllowed(t, p, true)
			}
		}
	})
	if clusterErr != nil {
		t.Fatalf("setting up the real API server: %v", clusterErr)
	}
	return cluster
}

// documentedRBAC is every object of the RBAC yaml block in docs/providers/kubernetes.md, as JSON.
func documentedRBAC(t *testing.T) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile("../../docs/providers/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(raw), "## The RBAC the bot needs")
	_, rest, ok := strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("no yaml block in the RBAC section of docs/providers/kubernetes.md")
	}
	var out []map[string]any
	for _, doc := range strings.Split(block, "\n---\n") {
		var obj map[string]any
		strictDecodeLoose(t, doc, &obj)
		out = append(out, obj)
	}
	return out
}

// testRead is the rules of the test roles (a Role debugger, a ClusterRole cluster-reader) and more than the
// bot itself holds, so only `bind` lets it grant them.
var testRead = []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}}}

func setUpCluster(kubeconfig string, manifests []map[string]any) (*realCluster, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	c := &realCluster{admin: admin}
	if c.adminHTTP, err = rest.HTTPClientFor(admin); err != nil {
		return nil, err
	}
	if c.rbac, err = rbacclient.NewForConfig(admin); err != nil {
		return nil, err
	}
	for _, ns := range []string{"jitbot", "payments", "search"} {
		if err := c.create(ctx, "/api/v1/namespaces", map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": ns}}); err != nil {
			return nil, err
		}
	}
	for _, ns := range []string{"payments", "search"} {
		if _, err := c.rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "debugger"}, Rules: testRead}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
	}
	if err := c.aggregateClusterRoles(ctx); err != nil {
		return nil, err
	}
	// The documented RBAC, object by object, exactly as written in the doc.
	for _, obj := range manifests {
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		var path string
		switch kind {
		case "ServiceAccount":
			path = "/api/v1/namespaces/" + ns + "/serviceaccounts"
		case "ClusterRole", "ClusterRoleBinding":
			path = "/apis/rbac.authorization.k8s.io/v1/" + strings.ToLower(kind) + "s"
		case "Role", "RoleBinding":
			path = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + ns + "/" + strings.ToLower(kind) + "s"
		default:
			return nil, fmt.Errorf("documented RBAC has a %q the test does not know how to apply", kind)
		}
		if err := c.create(ctx, path, obj); err != nil {
			return nil, fmt.Errorf("applying documented %s: %w", kind, err)
		}
	}
	// A short-lived token of the bot's ServiceAccount (TokenRequest, as the kubelet projects one).
	body, err := c.do(ctx, http.MethodPost, "/api/v1/namespaces/jitbot/serviceaccounts/jitbot/token",
		map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{"expirationSeconds": 3600}})
	if err != nil {
		return nil, fmt.Errorf("token for the bot: %w", err)
	}
	var tr struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.Status.Token == "" {
		return nil, fmt.Errorf("token for the bot: %v %s", err, body)
	}
	c.botToken = tr.Status.Token
	if c.proxy, err = newFaultProxy(admin); err != nil {
		return nil, err
	}
	return c, nil
}

// aggregateClusterRoles does the job of kube-controller-manager's clusterrole-aggregation controller, which an
// envtest-style control plane does not run: without it the bootstrap ClusterRoles view, edit and admin have no
// rules, anyone may bind them without `bind` (an empty role is covered by any caller's rules), and the `bind`
// the documented RBAC asks for could not be shown to matter. Repeated until nothing changes (edit aggregates view).
func (c *realCluster) aggregateClusterRoles(ctx context.Context) error {
	for range 5 {
		list, err := c.rbac.ClusterRoles().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		changed := false
		for _, role := range list.Items {
			if role.AggregationRule == nil {
				continue
			}
			var rules []rbacv1.PolicyRule
			for _, sel := range role.AggregationRule.ClusterRoleSelectors {
				ls, err := metav1.LabelSelectorAsSelector(&sel)
				if err != nil {
					return err
				}
				for _, src := range list.Items {
					if src.Name != role.Name && ls.Matches(labels.Set(src.Labels)) {
						for _, r := range src.Rules {
							if !slices.ContainsFunc(rules, func(x rbacv1.PolicyRule) bool { return reflect.DeepEqual(x, r) }) {
								rules = append(rules, r)
							}
						}
					}
				}
			}
			if !reflect.DeepEqual(rules, role.Rules) && len(rules) > 0 {
				role.Rules, changed = rules, true
				if _, err := c.rbac.ClusterRoles().Update(ctx, &role, metav1.UpdateOptions{}); err != nil {
					return fmt.Errorf("aggregating ClusterRole %s: %w", role.Name, err)
				}
			}
		}
		if !changed {
			return nil
		}
	}
	return nil
}

func (c *realCluster) create(ctx context.Context, path string, obj any) error {
	_, err := c.do(ctx, http.MethodPost, path, obj)
	if err != nil && strings.Contains(err.Error(), "409") {
		return nil // already there from an earlier test in this binary
	}
	return err
}

func (c *realCluster) do(ctx context.Context, method, path string, obj any) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.admin.Host, "/")+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.adminHTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return out, fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out, nil
}

// botConfig is the bot's identity (the ServiceAccount's token, no admin credentials), through the proxy.
func (c *realCluster) botConfig() *rest.Config {
	return &rest.Config{Host: c.proxy.srv.URL, BearerToken: c.botToken, TLSClientConfig: rest.TLSClientConfig{CAData: c.proxy.caPEM()}}
}

func (c *realCluster) botProvider(t *testing.T, namespaces ...string) *kube.Provider {
	t.Helper()
	p, err := kube.New(t.Context(), kube.Config{RESTConfig: c.botConfig(), Namespaces: namespaces})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// faultProxy forwards every request unchanged (the bot's own token included) to the real API server, except
// that the next request can be answered with an injected failure Status, and every request can be delayed.
type faultProxy struct {
	srv     *httptest.Server
	mu      sync.Mutex
	fault   int // HTTP status of the next answer; 0 forwards
	latency time.Duration
}

func newFaultProxy(admin *rest.Config) (*faultProxy, error) {
	upstream, err := url.Parse(admin.Host)
	if err != nil {
		return nil, err
	}
	// Only the API server's CA: the proxy adds no credentials of its own.
	tr, err := rest.TransportFor(&rest.Config{Host: admin.Host, TLSClientConfig: rest.TLSClientConfig{CAFile: admin.CAFile, CAData: admin.CAData}})
	if err != nil {
		return nil, err
	}
	fp := &faultProxy{}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = tr
	fp.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fp.mu.Lock()
		code, d := fp.fault, fp.latency
		fp.fault = 0
		fp.mu.Unlock()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if code != 0 {
			writeInjected(w, code)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	return fp, nil
}

func (fp *faultProxy) caPEM() []byte {
	var buf bytes.Buffer
	for _, c := range fp.srv.TLS.Certificates {
		for _, der := range c.Certificate {
			_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
	}
	return buf.Bytes()
}

func (fp *faultProxy) failNext(code int) { fp.mu.Lock(); fp.fault = code; fp.mu.Unlock() }
func (fp *faultProxy) setLatency(d time.Duration) {
	fp.mu.Lock()
	fp.latency = d
	fp.mu.Unlock()
}
func (fp *faultProxy) reset() { fp.mu.Lock(); fp.fault, fp.latency = 0, 0; fp.mu.Unlock() }

// writeInjected answers like the API server does (a metav1.Status with the reason its code maps to).
func writeInjected(w http.ResponseWriter, code int) {
	reason := map[int]metav1.StatusReason{
		http.StatusTooManyRequests:     metav1.StatusReasonTooManyRequests,
		http.StatusConflict:            metav1.StatusReasonConflict,
		http.StatusNotFound:            metav1.StatusReasonNotFound,
		http.StatusForbidden:           metav1.StatusReasonForbidden,
		http.StatusInternalServerError: metav1.StatusReasonInternalError,
	}[code]
	if code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Reason: reason, Code: int32(code), Message: "injected by the test proxy: " + string(reason)})
}

// bound counts the bindings (anyone's) that give a's subject a's role in a's scope, read as the admin.
func (c *realCluster) bound(t *testing.T, a grants.Assignment) int {
	t.Helper()
	sub, ref, ns := subjectOf(t, a.Principal), roleRefOf(a.Target), a.Target["namespace"]
	n := 0
	if ns != "" {
		l, err := c.rbac.RoleBindings(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rb := range l.Items {
			if rb.RoleRef == ref && slicesHas(rb.Subjects, sub) {
				n++
			}
		}
		return n
	}
	l, err := c.rbac.ClusterRoleBindings().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crb := range l.Items {
		if crb.RoleRef == ref && slicesHas(crb.Subjects, sub) {
			n++
		}
	}
	return n
}

// putBinding creates (present) or deletes a binding of a's subject to a's role, as the admin.
func (c *realCluster) putBinding(t *testing.T, a grants.Assignment, meta metav1.ObjectMeta, present bool) {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	ns, sub, ref := a.Target["namespace"], subjectOf(t, a.Principal), roleRefOf(a.Target)
	var err error
	switch {
	case present && ns != "":
		meta.Namespace = ns
		_, err = c.rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{sub}, RoleRef: ref}, metav1.CreateOptions{})
	case present:
		_, err = c.rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{sub}, RoleRef: ref}, metav1.CreateOptions{})
	case ns != "":
		err = c.rbac.RoleBindings(ns).Delete(ctx, meta.Name, metav1.DeleteOptions{})
	default:
		err = c.rbac.ClusterRoleBindings().Delete(ctx, meta.Name, metav1.DeleteOptions{})
	}
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// removeAccess deletes every binding (anyone's) of a's subject to a's role in a's scope.
func (c *realCluster) removeAccess(t *testing.T, a grants.Assignment) {
	t.Helper()
	sub, ref, ns := subjectOf(t, a.Principal), roleRefOf(a.Target), a.Target["namespace"]
	if ns != "" {
		l, err := c.rbac.RoleBindings(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rb := range l.Items {
			if rb.RoleRef == ref && slicesHas(rb.Subjects, sub) {
				c.putBinding(t, a, metav1.ObjectMeta{Name: rb.Name}, false)
			}
		}
		return
	}
	l, err := c.rbac.ClusterRoleBindings().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crb := range l.Items {
		if crb.RoleRef == ref && slicesHas(crb.Subjects, sub) {
			c.putBinding(t, a, metav1.ObjectMeta{Name: crb.Name}, false)
		}
	}
}

func standingName(a grants.Assignment) string {
	return "standing-" + strings.NewReplacer(":", "-", "/", "-", "@", "-", ".", "-").Replace(strings.ToLower(a.Principal))
}

var realSeq atomic.Int64

// realAssignment cycles over the targets the documented RBAC lets the bot grant.
func realAssignment(prefix string) grants.Assignment {
	n := realSeq.Add(1)
	id := fmt.Sprintf("g-%s%d-%d", prefix, n, time.Now().UnixNano()%1e6)
	a := grants.Assignment{GrantID: id, RequestID: "r-" + id, UserID: "U01ALICE", Role: "r", ExpiresAt: time.Now().Add(time.Hour)}
	switch n % 4 {
	case 0:
		a.Principal, a.Target = fmt.Sprintf("user:alice%d@example.com", n), map[string]string{"namespace": "payments", "role": "debugger"}
	case 1:
		a.Principal, a.Target = fmt.Sprintf("serviceaccount:ci/deployer%d", n), map[string]string{"namespace": "payments", "cluster_role": "edit"}
	case 2:
		a.Principal, a.Target = fmt.Sprintf("group:oncall%d", n), map[string]string{"namespace": "search", "cluster_role": "view"}
	default:
		a.Principal, a.Target = fmt.Sprintf("bob%d", n), map[string]string{"cluster_role": "view"}
	}
	return a
}

// TestAPIServerConformance: the shared provider suite against the real API server, the bot holding exactly the
// documented RBAC.
func TestAPIServerConformance(t *testing.T) {
	c := needAPIServer(t)
	codes := map[providertest.Fault]int{
		providertest.Throttled:    http.StatusTooManyRequests,
		providertest.Conflict:     http.StatusConflict,
		providertest.NotFound:     http.StatusNotFound,
		providertest.AccessDenied: http.StatusForbidden,
		providertest.ServerError:  http.StatusInternalServerError,
	}
	providertest.Run(t, providertest.Harness{
		New:        func(t *testing.T) grants.Provider { return c.botProvider(t) },
		Assignment: func(t *testing.T) grants.Assignment { return realAssignment("conf") },
		Present:    func(t *testing.T, a grants.Assignment) bool { return c.bound(t, a) > 0 },
		Count:      c.bound,
		Inject:     func(t *testing.T, f providertest.Fault) { c.proxy.failNext(codes[f]) },
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) {
			if !present {
				c.removeAccess(t, a)
				return
			}
			c.putBinding(t, a, metav1.ObjectMeta{Name: "jitbot-" + a.GrantID, Labels: map[string]string{
				kube.LabelManagedBy: kube.ManagedByJitbot, "jitbot.dev/grant-id": a.GrantID}}, true)
		},
		Standing: func(t *testing.T, a grants.Assignment, present bool) {
			c.putBinding(t, a, metav1.ObjectMeta{Name: standingName(a)}, present)
		},
		StandingPresent: func(t *testing.T, a grants.Assignment) bool {
			ns := a.Target["namespace"]
			var err error
			if ns != "" {
				_, err = c.rbac.RoleBindings(ns).Get(t.Context(), standingName(a), metav1.GetOptions{})
			} else {
				_, err = c.rbac.ClusterRoleBindings().Get(t.Context(), standingName(a), metav1.GetOptions{})
			}
			if err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			return err == nil
		},
		Cycles:  20,
		Latency: func(t *testing.T, d time.Duration) { c.proxy.setLatency(d) },
		Reset:   func(t *testing.T) { c.proxy.reset() },
		Secrets: []string{c.botToken},
	})
}
