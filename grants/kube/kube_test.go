package kube_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jitbot/jitbot/grants"
	"github.com/jitbot/jitbot/grants/kube"
	"github.com/jitbot/jitbot/grants/kube/kubefake"
	"github.com/jitbot/jitbot/grants/providertest"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const rbacGroup = "rbac.authorization.k8s.io"

var fixedNow = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// newFake starts a kubefake with the roles the tests grant (besides the bootstrap ClusterRoles cluster-admin,
// admin, edit and view): the Role debugger in payments and search, and the ClusterRole cluster-reader.
func newFake(opts kubefake.Options) *kubefake.Server {
	read := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, Verbs: []string{"get", "list"}}}
	for _, ns := range []string{"payments", "search"} {
		opts.Roles = append(opts.Roles, rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "debugger"}, Rules: read})
	}
	opts.ClusterRoles = append(opts.ClusterRoles, rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "cluster-reader"}, Rules: read})
	return kubefake.New(opts)
}

func newProvider(t *testing.T, srv *kubefake.Server, namespaces ...string) *kube.Provider {
	t.Helper()
	p, err := kube.New(t.Context(), kube.Config{RESTConfig: srv.RESTConfig(), Namespaces: namespaces, Now: func() time.Time { return fixedNow }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// subjectOf is the test's own reading of the principal syntax (not the adapter's).
func subjectOf(t *testing.T, principal string) rbacv1.Subject {
	t.Helper()
	switch {
	case strings.HasPrefix(principal, "serviceaccount:"):
		ns, name, _ := strings.Cut(strings.TrimPrefix(principal, "serviceaccount:"), "/")
		return rbacv1.Subject{Kind: "ServiceAccount", Namespace: ns, Name: name}
	case strings.HasPrefix(principal, "group:"):
		return rbacv1.Subject{Kind: "Group", APIGroup: rbacGroup, Name: strings.TrimPrefix(principal, "group:")}
	default:
		return rbacv1.Subject{Kind: "User", APIGroup: rbacGroup, Name: strings.TrimPrefix(principal, "user:")}
	}
}

func roleRefOf(target map[string]string) rbacv1.RoleRef {
	if r, ok := target["role"]; ok {
		return rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "Role", Name: r}
	}
	return rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: target["cluster_role"]}
}

func conformance(t *testing.T, mkAssignment func(n int64) grants.Assignment) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	var n atomic.Int64

	faults := map[providertest.Fault]kubefake.Fault{
		providertest.Throttled:    kubefake.TooManyRequests,
		providertest.Conflict:     kubefake.Conflict,
		providertest.NotFound:     kubefake.NotFound,
		providertest.AccessDenied: kubefake.Forbidden,
		providertest.ServerError:  kubefake.InternalError,
	}
	bound := func(t *testing.T, a grants.Assignment) int {
		return srv.Bound(subjectOf(t, a.Principal), roleRefOf(a.Target), a.Target["namespace"])
	}
	providertest.Run(t, providertest.Harness{
		New:        func(t *testing.T) grants.Provider { return newProvider(t, srv) },
		Assignment: func(t *testing.T) grants.Assignment { return mkAssignment(n.Add(1)) },
		Present:    func(t *testing.T, a grants.Assignment) bool { return bound(t, a) > 0 },
		Count:      bound,
		Inject:     func(t *testing.T, f providertest.Fault) { srv.FailNext(faults[f]) },
		SetPresent: func(t *testing.T, a grants.Assignment, present bool) {
			ns := a.Target["namespace"]
			sub, ref := subjectOf(t, a.Principal), roleRefOf(a.Target)
			if present {
				// The documented object contract: name jitbot-<grant id>, managed-by and grant-id labels.
				meta := metav1.ObjectMeta{Name: "jitbot-" + a.GrantID, Namespace: ns, Labels: map[string]string{
					"app.kubernetes.io/managed-by": "jitbot", "jitbot.dev/grant-id": a.GrantID}}
				if ns != "" {
					srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{sub}, RoleRef: ref})
				} else {
					srv.PutClusterRoleBinding(rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: []rbacv1.Subject{sub}, RoleRef: ref})
				}
				return
			}
			for _, rb := range srv.RoleBindings() {
				if ns != "" && rb.Namespace == ns && rb.RoleRef == ref && slicesHas(rb.Subjects, sub) {
					srv.DeleteRoleBinding(rb.Namespace, rb.Name)
				}
			}
			for _, crb := range srv.ClusterRoleBindings() {
				if ns == "" && crb.RoleRef == ref && slicesHas(crb.Subjects, sub) {
					srv.DeleteClusterRoleBinding(crb.Name)
				}
			}
		},
		// A binding of the administrator's own (no jitbot labels) of the same subject and role.
		Standing: func(t *testing.T, a grants.Assignment, present bool) {
			ns, name := a.Target["namespace"], "standing-"+strings.NewReplacer(":", "-", "/", "-", "@", "-", ".", "-").Replace(strings.ToLower(a.Principal))
			sub, ref := subjectOf(t, a.Principal), roleRefOf(a.Target)
			switch {
			case present && ns != "":
				srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Subjects: []rbacv1.Subject{sub}, RoleRef: ref})
			case present:
				srv.PutClusterRoleBinding(rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, Subjects: []rbacv1.Subject{sub}, RoleRef: ref})
			case ns != "":
				srv.DeleteRoleBinding(ns, name)
			default:
				srv.DeleteClusterRoleBinding(name)
			}
		},
		StandingPresent: func(t *testing.T, a grants.Assignment) bool {
			ns, name := a.Target["namespace"], "standing-"+strings.NewReplacer(":", "-", "/", "-", "@", "-", ".", "-").Replace(strings.ToLower(a.Principal))
			if ns != "" {
				_, ok := srv.RoleBinding(ns, name)
				return ok
			}
			_, ok := srv.ClusterRoleBinding(name)
			return ok
		},
		Cycles:  20,
		Latency: func(t *testing.T, d time.Duration) { srv.SetLatency(d) },
		Reset:   func(t *testing.T) { srv.Reset() },
		Secrets: []string{srv.Token()},
	})
}

func slicesHas(subs []rbacv1.Subject, want rbacv1.Subject) bool {
	for _, s := range subs {
		if s == want {
			return true
		}
	}
	return false
}

func TestConformanceRoleBinding(t *testing.T) {
	conformance(t, func(n int64) grants.Assignment {
		id := fmt.Sprintf("g-rb%d", n)
		a := grants.Assignment{GrantID: id, RequestID: "r-" + id, UserID: "U01ALICE", Role: "prod-debug", ExpiresAt: fixedNow.Add(time.Hour)}
		switch n % 3 {
		case 0:
			a.Principal, a.Target = fmt.Sprintf("user:alice%d@example.com", n), map[string]string{"namespace": "payments", "role": "debugger"}
		case 1:
			a.Principal, a.Target = fmt.Sprintf("serviceaccount:ci/deployer%d", n), map[string]string{"namespace": "payments", "cluster_role": "edit"}
		default:
			a.Principal, a.Target = fmt.Sprintf("bob%d", n), map[string]string{"namespace": "search", "cluster_role": "view"}
		}
		return a
	})
}

func TestConformanceClusterRoleBinding(t *testing.T) {
	conformance(t, func(n int64) grants.Assignment {
		id := fmt.Sprintf("g-crb%d", n)
		a := grants.Assignment{GrantID: id, RequestID: "r-" + id, UserID: "U02BOB", Role: "cluster-view", ExpiresAt: fixedNow.Add(time.Hour)}
		if n%2 == 0 {
			a.Principal, a.Target = fmt.Sprintf("group:oncall%d", n), map[string]string{"cluster_role": "view"}
		} else {
			a.Principal, a.Target = fmt.Sprintf("user:carol%d", n), map[string]string{"cluster_role": "cluster-reader"}
		}
		return a
	})
}

func assignment(id, principal string, target map[string]string) grants.Assignment {
	return grants.Assignment{GrantID: id, RequestID: "r-" + id, UserID: "U01ALICE", Role: "r", Principal: principal, Target: target,
		ExpiresAt: time.Date(2026, 5, 4, 11, 30, 0, 0, time.FixedZone("CEST", 2*3600))}
}

// TestGrantRequest asserts the exact wire request: path, content type and body.
func TestGrantRequest(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)

	tests := []struct {
		name      string
		principal string
		target    map[string]string
		path      string
		kind      string
		subject   map[string]any
		roleRef   map[string]any
		ref       string
	}{
		{
			name: "role in namespace", principal: "user:alice@example.com",
			target:  map[string]string{"namespace": "payments", "role": "debugger"},
			path:    "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings",
			kind:    "RoleBinding",
			subject: map[string]any{"kind": "User", "apiGroup": rbacGroup, "name": "alice@example.com"},
			roleRef: map[string]any{"kind": "Role", "apiGroup": rbacGroup, "name": "debugger"},
			ref:     "rolebinding/payments/jitbot-g-1",
		},
		{
			name: "cluster role in namespace", principal: "serviceaccount:ci/deployer",
			target:  map[string]string{"namespace": "payments", "cluster_role": "edit"},
			path:    "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings",
			kind:    "RoleBinding",
			subject: map[string]any{"kind": "ServiceAccount", "namespace": "ci", "name": "deployer"},
			roleRef: map[string]any{"kind": "ClusterRole", "apiGroup": rbacGroup, "name": "edit"},
			ref:     "rolebinding/payments/jitbot-g-2",
		},
		{
			name: "cluster role cluster-wide", principal: "group:sre",
			target:  map[string]string{"cluster_role": "view"},
			path:    "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
			kind:    "ClusterRoleBinding",
			subject: map[string]any{"kind": "Group", "apiGroup": rbacGroup, "name": "sre"},
			roleRef: map[string]any{"kind": "ClusterRole", "apiGroup": rbacGroup, "name": "view"},
			ref:     "clusterrolebinding/jitbot-g-3",
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.ClearRequests()
			id := fmt.Sprintf("g-%d", i+1)
			ref, err := p.Grant(t.Context(), assignment(id, tc.principal, tc.target))
			if err != nil {
				t.Fatal(err)
			}
			if ref != tc.ref {
				t.Errorf("ref = %q, want %q", ref, tc.ref)
			}
			// First the role check (GET of the Role or ClusterRole), the list that looks for standing access, then
			// the create.
			reqs := srv.Requests()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3: %+v", len(reqs), reqs)
			}
			roleRef := roleRefOf(tc.target)
			wantRole := "/apis/rbac.authorization.k8s.io/v1/clusterroles/" + roleRef.Name
			if roleRef.Kind == "Role" {
				wantRole = "/apis/rbac.authorization.k8s.io/v1/namespaces/" + tc.target["namespace"] + "/roles/" + roleRef.Name
			}
			if g := reqs[0]; g.Method != http.MethodGet || g.Path != wantRole || g.Status != http.StatusOK {
				t.Errorf("role check %s %s -> %d, want GET %s -> 200", g.Method, g.Path, g.Status, wantRole)
			}
			if l := reqs[1]; l.Method != http.MethodGet || l.Path != tc.path || l.Query.Get("labelSelector") != "" {
				t.Errorf("standing-access list %s %s ?%v, want GET %s", l.Method, l.Path, l.Query, tc.path)
			}
			r := reqs[2]
			if r.Method != http.MethodPost || r.Path != tc.path || r.Status != http.StatusCreated {
				t.Errorf("request %s %s -> %d, want POST %s -> 201", r.Method, r.Path, r.Status, tc.path)
			}
			if !strings.HasPrefix(r.ContentType, "application/json") {
				t.Errorf("Content-Type %q, want application/json", r.ContentType)
			}
			if !strings.Contains(r.Accept, "application/json") || strings.Contains(r.Accept, "protobuf") {
				t.Errorf("Accept %q, want JSON only", r.Accept)
			}
			b := r.Body
			if b["kind"] != tc.kind || b["apiVersion"] != "rbac.authorization.k8s.io/v1" {
				t.Errorf("kind/apiVersion = %v/%v", b["kind"], b["apiVersion"])
			}
			meta := b["metadata"].(map[string]any)
			if meta["name"] != "jitbot-"+id {
				t.Errorf("name = %v", meta["name"])
			}
			if ns := tc.target["namespace"]; ns != "" && meta["namespace"] != ns {
				t.Errorf("namespace = %v, want %s", meta["namespace"], ns)
			}
			labels := meta["labels"].(map[string]any)
			if labels["app.kubernetes.io/managed-by"] != "jitbot" || labels["jitbot.dev/grant-id"] != id {
				t.Errorf("labels = %v", labels)
			}
			if bk, _ := labels["jitbot.dev/binding"].(string); len(bk) != 32 {
				t.Errorf("binding label = %v, want 32 hex digits", labels["jitbot.dev/binding"])
			}
			wantAnn := map[string]any{
				"jitbot.dev/grant-id":   id,
				"jitbot.dev/request-id": "r-" + id,
				"jitbot.dev/slack-user": "U01ALICE",
				"jitbot.dev/expires-at": "2026-05-04T09:30:00Z",
				"jitbot.dev/granted-at": "2026-05-04T10:00:00Z",
			}
			if ann := meta["annotations"]; !reflect.DeepEqual(ann, wantAnn) {
				t.Errorf("annotations = %v, want %v", ann, wantAnn)
			}
			if subs := b["subjects"]; !reflect.DeepEqual(subs, []any{tc.subject}) {
				t.Errorf("subjects = %v, want [%v]", subs, tc.subject)
			}
			if rr := b["roleRef"]; !reflect.DeepEqual(rr, tc.roleRef) {
				t.Errorf("roleRef = %v, want %v", rr, tc.roleRef)
			}
		})
	}
}

func TestGrantAlreadyExistsIdentical(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	a := assignment("g-same", "user:alice", map[string]string{"namespace": "payments", "role": "debugger"})
	ref0, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatal(err)
	}
	srv.ClearRequests()
	a.ExpiresAt = a.ExpiresAt.Add(time.Hour) // an extension re-grants with another expiry
	a.Ref = ref0
	ref, err := p.Grant(t.Context(), a)
	if err != nil {
		t.Fatalf("second Grant: %v", err)
	}
	if ref != "rolebinding/payments/jitbot-g-same" {
		t.Errorf("ref = %q", ref)
	}
	// The second grant carries the first one's reference (as the manager passes it): no standing-access list.
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[0].Path != "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/roles/debugger" ||
		reqs[1].Method != "POST" || reqs[1].Status != http.StatusConflict ||
		reqs[2].Method != "GET" || reqs[2].Path != "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings/jitbot-g-same" {
		t.Errorf("requests = %+v, want the role check, POST (409) then GET of the binding", reqs)
	}
	if n := len(srv.RoleBindings()); n != 1 {
		t.Errorf("%d bindings, want 1", n)
	}
}

func TestGrantNameClash(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	ctx := t.Context()
	a := assignment("g-clash", "user:alice", map[string]string{"namespace": "payments", "role": "debugger"})

	// Someone else's object under jitbot's name (binding someone else).
	srv.PutRoleBinding(rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "jitbot-g-clash", Namespace: "payments"},
		Subjects:   []rbacv1.Subject{subjectOf(t, "user:bob")},
		RoleRef:    roleRefOf(a.Target),
	})
	_, err := p.Grant(ctx, a)
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), "name clash") {
		t.Fatalf("Grant over a foreign object: %v; want a permanent name clash", err)
	}
	// Had that object bound alice to the role, it would be her standing access: reported, not touched.
	srv.DeleteRoleBinding("payments", "jitbot-g-clash")
	srv.PutRoleBinding(rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "jitbot-g-clash", Namespace: "payments"},
		Subjects:   []rbacv1.Subject{subjectOf(t, "user:alice")},
		RoleRef:    roleRefOf(a.Target),
	})
	if ref, err := p.Grant(ctx, a); err != nil || !grants.IsPreExisting(ref) {
		t.Fatalf("Grant over alice's own binding: %q, %v; want pre-existing", ref, err)
	}

	// jitbot's own binding for this grant, edited to bind another role.
	srv.DeleteRoleBinding("payments", "jitbot-g-clash")
	srv.PutRoleBinding(rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "jitbot-g-clash", Namespace: "payments", Labels: map[string]string{
			"app.kubernetes.io/managed-by": "jitbot", "jitbot.dev/grant-id": "g-clash"}},
		Subjects: []rbacv1.Subject{subjectOf(t, "user:mallory")},
		RoleRef:  roleRefOf(a.Target),
	})
	_, err = p.Grant(ctx, a)
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), "modified") {
		t.Fatalf("Grant over a modified binding: %v; want permanent", err)
	}
	if ok, err := p.Check(ctx, a); err != nil || ok {
		t.Errorf("Check on a modified binding = %v, %v; want false", ok, err)
	}
}

func TestGrantEscalationForbidden(t *testing.T) {
	srv := newFake(kubefake.Options{Privileged: []kubefake.RoleRef{{Kind: "ClusterRole", Name: "cluster-admin"}}})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	for _, target := range []map[string]string{{"cluster_role": "cluster-admin"}, {"namespace": "payments", "cluster_role": "cluster-admin"}} {
		_, err := p.Grant(t.Context(), assignment("g-esc", "user:alice", target))
		if err == nil || !grants.IsPermanent(err) {
			t.Fatalf("Grant of a privileged role: %v; want permanent", err)
		}
		msg := err.Error()
		for _, want := range []string{"escalation prevention", "`bind`", "cluster-admin", "docs/providers/kubernetes.md"} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not mention %q", msg, want)
			}
		}
		if strings.Contains(msg, srv.Token()) {
			t.Error("error contains the bearer token")
		}
	}
	if len(srv.RoleBindings())+len(srv.ClusterRoleBindings()) != 0 {
		t.Error("a binding was stored")
	}
}

func TestGrantMissingNamespaceIsPermanent(t *testing.T) {
	srv := newFake(kubefake.Options{Namespaces: []string{"payments"}})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	// A Role in a namespace that does not exist is not found by the role check.
	_, err := p.Grant(t.Context(), assignment("g-ns", "user:alice", map[string]string{"namespace": "nope", "role": "debugger"}))
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), `Role "debugger" does not exist in namespace "nope"`) {
		t.Fatalf("Grant of a Role in a missing namespace: %v; want permanent not found", err)
	}
	// A ClusterRole exists; the create meets the NamespaceLifecycle admission plugin.
	_, err = p.Grant(t.Context(), assignment("g-ns2", "user:alice", map[string]string{"namespace": "nope", "cluster_role": "view"}))
	if !grants.IsPermanent(err) || !strings.Contains(err.Error(), `namespaces "nope" not found`) {
		t.Fatalf("Grant in a missing namespace: %v; want permanent not found", err)
	}
}

// TestRevokeOverlappingLeases: two leases on one binding, the first ended while covered (no revoke); revoking
// with the second's assignment removes both bindings, and leaves other principals' bindings alone.
func TestRevokeOverlappingLeases(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	ctx := t.Context()
	target := map[string]string{"namespace": "payments", "cluster_role": "edit"}
	a1 := assignment("g-a1", "user:alice", target)
	a2 := assignment("g-a2", "user:alice", target)
	other := assignment("g-b1", "user:bob", target)
	for _, a := range []grants.Assignment{a1, a2, other} {
		if _, err := p.Grant(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Bound(subjectOf(t, "user:alice"), roleRefOf(target), "payments"); n != 2 {
		t.Fatalf("alice bound %d times, want 2", n)
	}
	// Someone added a subject to a1's binding by hand: revoke still removes it (it carries jitbot's labels).
	rb, _ := srv.RoleBinding("payments", "jitbot-g-a1")
	rb.Subjects = append(rb.Subjects, subjectOf(t, "user:mallory"))
	srv.PutRoleBinding(rb)
	srv.ClearRequests()
	if err := p.Revoke(ctx, a2); err != nil {
		t.Fatal(err)
	}
	if n := srv.Bound(subjectOf(t, "user:alice"), roleRefOf(target), "payments"); n != 0 {
		t.Errorf("alice still bound %d times after revoke", n)
	}
	if n := srv.Bound(subjectOf(t, "user:bob"), roleRefOf(target), "payments"); n != 1 {
		t.Errorf("bob bound %d times, want 1 (untouched)", n)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("requests = %+v, want list + 2 deletes", reqs)
	}
	l := reqs[0]
	if l.Method != "GET" || l.Path != "/apis/rbac.authorization.k8s.io/v1/namespaces/payments/rolebindings" ||
		!strings.HasPrefix(l.Query.Get("labelSelector"), "app.kubernetes.io/managed-by=jitbot,jitbot.dev/binding=") {
		t.Errorf("list request = %+v", l)
	}
	for _, d := range reqs[1:] {
		pre, _ := d.Body["preconditions"].(map[string]any)
		if d.Method != "DELETE" || pre["uid"] == nil || pre["uid"] == "" {
			t.Errorf("delete request %s %s body %v: want DELETE with a uid precondition", d.Method, d.Path, d.Body)
		}
	}
}

// TestRevokeUIDPrecondition: the binding is replaced between the list and the delete; the delete's precondition
// fails (409), the revoke is retryable, and the next one removes the new object.
func TestRevokeUIDPrecondition(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	ctx := t.Context()
	a := assignment("g-uid", "user:alice", map[string]string{"cluster_role": "view"})
	if _, err := p.Grant(ctx, a); err != nil {
		t.Fatal(err)
	}
	var fired atomic.Bool
	srv.SetHook(func(r kubefake.Request) {
		if r.Method == "DELETE" && fired.CompareAndSwap(false, true) {
			old, _ := srv.ClusterRoleBinding("jitbot-g-uid")
			srv.DeleteClusterRoleBinding(old.Name)
			old.UID, old.ResourceVersion = types.UID(""), ""
			srv.PutClusterRoleBinding(old)
		}
	})
	err := p.Revoke(ctx, a)
	// The apiserver's text (rest.BeforeDelete): "the UID in the precondition (...) does not match the UID in record".
	if err == nil || grants.IsPermanent(err) || !strings.Contains(err.Error(), "the UID in the precondition") {
		t.Fatalf("Revoke racing a replacement: %v; want a retryable precondition conflict", err)
	}
	if err := p.Revoke(ctx, a); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if _, ok := srv.ClusterRoleBinding("jitbot-g-uid"); ok {
		t.Error("binding still present")
	}
}

func TestListOwned(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	ctx := t.Context()
	for _, a := range []grants.Assignment{
		assignment("g-1", "user:alice", map[string]string{"namespace": "payments", "role": "debugger"}),
		assignment("g-2", "serviceaccount:ci/deployer", map[string]string{"namespace": "search", "cluster_role": "edit"}),
		assignment("g-3", "group:sre", map[string]string{"cluster_role": "view"}),
		assignment("G_Odd.Id/4", "bob", map[string]string{"cluster_role": "view"}),
	} {
		if _, err := p.Grant(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	// Not jitbot's: must not be listed.
	srv.PutRoleBinding(rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "team-admins", Namespace: "payments"},
		Subjects: []rbacv1.Subject{subjectOf(t, "group:payments")}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "admin"}})

	srv.ClearRequests()
	got, err := p.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]grants.Owned{
		"g-1": {GrantID: "g-1", Principal: "user:alice", Target: map[string]string{"namespace": "payments", "role": "debugger"}, Ref: "rolebinding/payments/jitbot-g-1"},
		"g-2": {GrantID: "g-2", Principal: "serviceaccount:ci/deployer", Target: map[string]string{"namespace": "search", "cluster_role": "edit"}, Ref: "rolebinding/search/jitbot-g-2"},
		"g-3": {GrantID: "g-3", Principal: "group:sre", Target: map[string]string{"cluster_role": "view"}, Ref: "clusterrolebinding/jitbot-g-3"},
		"G_Odd.Id/4": {GrantID: "G_Odd.Id/4", Principal: "user:bob", Target: map[string]string{"cluster_role": "view"},
			Ref: "clusterrolebinding/" + kube.BindingName("G_Odd.Id/4")},
	}
	if len(got) != len(want) {
		t.Fatalf("ListOwned = %+v, want %d entries", got, len(want))
	}
	for _, o := range got {
		if w, ok := want[o.GrantID]; !ok || !reflect.DeepEqual(o, w) {
			t.Errorf("owned %+v, want %+v", o, w)
		}
	}
	reqs := srv.Requests()
	paths := []string{"/apis/rbac.authorization.k8s.io/v1/rolebindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"}
	if len(reqs) != 2 {
		t.Fatalf("requests = %+v", reqs)
	}
	for i, r := range reqs {
		if r.Method != "GET" || r.Path != paths[i] || r.Query.Get("labelSelector") != "app.kubernetes.io/managed-by=jitbot" {
			t.Errorf("request %d = %s %s ?%s", i, r.Method, r.Path, r.Query.Encode())
		}
	}

	// Confined to namespaces: only RoleBindings there, no cluster-wide list.
	pn := newProvider(t, srv, "search")
	srv.ClearRequests()
	got, err = pn.ListOwned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GrantID != "g-2" {
		t.Errorf("confined ListOwned = %+v", got)
	}
	if reqs := srv.Requests(); len(reqs) != 1 || reqs[0].Path != "/apis/rbac.authorization.k8s.io/v1/namespaces/search/rolebindings" {
		t.Errorf("confined requests = %+v", reqs)
	}
}

func TestListOwnedPaging(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv, "big")
	for i := range 1201 {
		srv.PutRoleBinding(rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("jitbot-g-%04d", i), Namespace: "big", Labels: map[string]string{
				"app.kubernetes.io/managed-by": "jitbot", "jitbot.dev/grant-id": fmt.Sprintf("g-%04d", i)}},
			Subjects: []rbacv1.Subject{subjectOf(t, "user:u")}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "view"},
		})
	}
	got, err := p.ListOwned(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1201 {
		t.Errorf("listed %d, want 1201", len(got))
	}
	if n := len(srv.Requests()); n != 3 {
		t.Errorf("%d list pages, want 3", n)
	}
}

func TestConfinedNamespacesRefuseOtherTargets(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv, "payments")
	for _, target := range []map[string]string{{"cluster_role": "view"}, {"namespace": "search", "cluster_role": "view"}} {
		_, err := p.Grant(t.Context(), assignment("g-x", "user:alice", target))
		if !grants.IsPermanent(err) {
			t.Errorf("Grant %v: %v; want permanent", target, err)
		}
	}
	if len(srv.Requests()) != 0 {
		t.Error("refused targets reached the API")
	}
}

func TestCancelledContextMakesNoRequest(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	a := assignment("g-c", "user:alice", map[string]string{"cluster_role": "view"})
	if _, err := p.Grant(ctx, a); !errors.Is(err, context.Canceled) || grants.IsPermanent(err) {
		t.Errorf("Grant: %v", err)
	}
	if _, err := p.ListOwned(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ListOwned: %v", err)
	}
	if n := len(srv.Requests()); n != 0 {
		t.Errorf("%d requests reached the server", n)
	}
}

func TestWrongTokenNotLeaked(t *testing.T) {
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	cfg := srv.RESTConfig()
	cfg.BearerToken = "sha256~wrong-token-abcdef0123456789"
	p, err := kube.New(t.Context(), kube.Config{RESTConfig: cfg})
	if err != nil {
		t.Fatal(err)
	}
	a := assignment("g-t", "user:alice", map[string]string{"cluster_role": "view"})
	_, gerr := p.Grant(t.Context(), a)
	_, cerr := p.Check(t.Context(), a)
	rerr := p.Revoke(t.Context(), a)
	_, lerr := p.ListOwned(t.Context())
	for _, err := range []error{gerr, cerr, rerr, lerr} {
		if err == nil {
			t.Fatal("nil error with a wrong token")
		}
		if grants.IsPermanent(err) {
			t.Errorf("401 classified permanent: %v", err)
		}
		if s := fmt.Sprintf("%v %+v", err, err); strings.Contains(s, cfg.BearerToken) || strings.Contains(s, srv.Token()) {
			t.Errorf("error leaks a token: %v", err)
		}
	}
}

// TestKubeconfig loads the client through client-go's kubeconfig machinery from a file naming two contexts.
func TestKubeconfig(t *testing.T) {
	srv := newFake(kubefake.Options{TLS: true})
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "config")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: %q, certificate-authority-data: %q}
- name: elsewhere
  cluster: {server: "http://127.0.0.1:1"}
users:
- name: bot
  user: {token: %q}
contexts:
- name: jit
  context: {cluster: fake, user: bot}
- name: other
  context: {cluster: elsewhere, user: bot}
current-context: other
`, srv.URL(), base64.StdEncoding.EncodeToString(srv.CAData()), srv.Token())
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := kube.New(t.Context(), kube.Config{Kubeconfig: path, Context: "jit"})
	if err != nil {
		t.Fatal(err)
	}
	a := assignment("g-kc", "user:alice", map[string]string{"cluster_role": "view"})
	if _, err := p.Grant(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 3 || reqs[2].Method != http.MethodPost || !strings.HasPrefix(reqs[2].ContentType, "application/json") {
		t.Errorf("requests = %+v; want the role check, the list and one JSON POST", reqs)
	}

	_, err = kube.New(t.Context(), kube.Config{Kubeconfig: path, Context: "missing"})
	if err == nil || strings.Contains(err.Error(), srv.Token()) {
		t.Errorf("unknown context: %v", err)
	}
}

func TestValidateTarget(t *testing.T) {
	good := []map[string]string{
		{"namespace": "payments", "role": "debugger"},
		{"namespace": "payments", "cluster_role": "edit"},
		{"cluster_role": "view"},
		{"cluster_role": "acme.example.com-reader"},
	}
	for _, tg := range good {
		if err := kube.ValidateTarget(tg); err != nil {
			t.Errorf("ValidateTarget(%v) = %v", tg, err)
		}
	}
	bad := []map[string]string{
		{},
		{"role": "debugger"},      // Role without namespace
		{"namespace": "payments"}, // no role
		{"namespace": "p", "role": "a", "cluster_role": "b"}, // both
		{"cluster_role": "Edit"},                             // not DNS-1123
		{"cluster_role": "system:aggregate-to-view"},         // colon
		{"namespace": "Payments", "cluster_role": "view"},
		{"namespace": "a.b", "cluster_role": "view"}, // namespace is a label, not a subdomain
		{"cluster_role": "view", "verbs": "*"},       // unknown key
	}
	for _, tg := range bad {
		if err := kube.ValidateTarget(tg); err == nil {
			t.Errorf("ValidateTarget(%v) accepted", tg)
		}
	}
}

func TestValidatePrincipal(t *testing.T) {
	for _, p := range []string{"alice", "user:alice@example.com", "oidc:alice", "group:sre", "serviceaccount:ci/deployer"} {
		if err := kube.ValidatePrincipal(p); err != nil {
			t.Errorf("ValidatePrincipal(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "user:", "group:", "serviceaccount:ci", "serviceaccount:CI/x", "serviceaccount:ci/", " alice",
		"user:a\nb", "group:system:authenticated", "group:system:unauthenticated", "group:system:serviceaccounts:ci", "group:system:masters", "system:anonymous"} {
		if err := kube.ValidatePrincipal(p); err == nil {
			t.Errorf("ValidatePrincipal(%q) accepted", p)
		}
	}
}

func TestBindingName(t *testing.T) {
	if got := kube.BindingName("g-abc23xyz45"); got != "jitbot-g-abc23xyz45" {
		t.Errorf("plain id: %q", got)
	}
	a, b := kube.BindingName("G-1"), kube.BindingName("g-1")
	if a == b {
		t.Errorf("G-1 and g-1 share the name %q", a)
	}
	long := kube.BindingName(strings.Repeat("x", 400))
	if len(long) > 253 {
		t.Errorf("long name has %d bytes", len(long))
	}
	for _, n := range []string{a, long, kube.BindingName("a/b.c_d"), kube.BindingName("trailing-")} {
		for _, r := range n {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				t.Errorf("%q has %q", n, r)
			}
		}
		if strings.HasSuffix(n, "-") {
			t.Errorf("%q ends with -", n)
		}
	}
}

func TestSettings(t *testing.T) {
	s := kube.Settings{Kubeconfig: "/etc/jitbot/kubeconfig", Context: "prod", Namespaces: []string{"payments", "search"}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.ValidateTarget(map[string]string{"namespace": "payments", "role": "debugger"}); err != nil {
		t.Error(err)
	}
	if err := s.ValidateTarget(map[string]string{"cluster_role": "view"}); err == nil {
		t.Error("cluster-wide target accepted by confined settings")
	}
	if err := s.ValidateTarget(map[string]string{"namespace": "other", "cluster_role": "view"}); err == nil {
		t.Error("namespace outside the list accepted")
	}
	if err := (kube.Settings{}).Validate(); err != nil {
		t.Errorf("zero Settings: %v", err)
	}
	for _, bad := range []kube.Settings{{Namespaces: []string{"Bad"}}, {Namespaces: []string{"a", "a"}}, {Context: " prod"}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if c := s.Config(); c.Kubeconfig != s.Kubeconfig || c.Context != s.Context || !reflect.DeepEqual(c.Namespaces, s.Namespaces) {
		t.Errorf("Config() = %+v", c)
	}
}
