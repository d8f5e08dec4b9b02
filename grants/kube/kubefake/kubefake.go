// Package kubefake is an in-memory Kubernetes API server for the rbac.authorization.k8s.io/v1 binding endpoints,
// served over HTTP as JSON, for testing code that talks to Kubernetes through client-go without a cluster.
//
// It follows the documented REST API, not any one client: the paths below, Status error objects with the reasons
// and codes kube-apiserver uses, uid/resourceVersion/creationTimestamp assignment, delete preconditions, label
// selectors (=, ==, !=, existence and non-existence), limit/continue paging and bearer-token authentication.
//
//	POST   /apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings
//	GET    /apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings[?labelSelector=...&limit=...&continue=...]
//	GET    /apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}
//	DELETE /apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/{name}
//	GET    /apis/rbac.authorization.k8s.io/v1/rolebindings                         (every namespace)
//	POST   /apis/rbac.authorization.k8s.io/v1/clusterrolebindings
//	GET    /apis/rbac.authorization.k8s.io/v1/clusterrolebindings[?...]
//	GET    /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}
//	DELETE /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}
//	GET    /apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/{name}
//	GET    /apis/rbac.authorization.k8s.io/v1/clusterroles/{name}
//
// Anything else answers 404 (unknown path) or 405 (a verb the fake does not implement, such as PUT or PATCH).
// Only JSON bodies are accepted (415 otherwise): set rest.Config.ContentType to application/json, as RESTConfig
// does. Create validates roleRef and subjects like the apiserver (422 Invalid), refuses a namespace that does not
// exist when Options.Namespaces is set (404, like the NamespaceLifecycle admission plugin) and applies RBAC
// escalation prevention: without Options.CallerRules the caller holds bind on every role but the
// Options.Privileged ones (refused with the apiserver's 403), and - like kube-apiserver for a caller with bind -
// accepts a binding to a Role or ClusterRole that does not exist; with CallerRules it authorizes every request
// and requires bind on the role or all of its rules (so the caller may bind, without bind, a role made of rules
// it holds, its own granting role included), refusing a role that does not exist (404 NotFound naming the
// binding resource and the role, as kube-apiserver v1.37 does). Roles exist when given in
// Options or put with PutRole/PutClusterRole; the bootstrap ClusterRoles cluster-admin, admin, edit and view
// exist unless Options.NoBootstrapRoles. A delete whose UID or resourceVersion precondition fails answers 409
// with the text of k8s.io/apiserver's rest.BeforeDelete ("Operation cannot be fulfilled on
// RoleBinding.rbac.authorization.k8s.io "x": the UID in the precondition (...) does not match the UID in record
// (...)...").
//
// grants/kube's TestAPIServerMatchesKubefake (`make test-kube`) sends the same requests to kube-apiserver v1.37.2
// and to this fake and compares status, reason and message: the Forbidden texts of a denied GET, the escalation
// refusal (including the group list of a ServiceAccount caller, which the fake used to print without
// system:serviceaccounts:<namespace>), the answer to a binding of a missing role without bind (404, where the
// fake used to answer 403), NotFound, AlreadyExists, the UID-precondition Conflict and the 201 for a
// binding to a missing role from a caller holding bind all match.
//
// Known divergences from kube-apiserver (v1.32, v1.37), by design or simplification:
//   - the bootstrap roles' rules are shortened (see BootstrapClusterRoles); aggregation is not modelled;
//   - CallerRules apply in every namespace and at the cluster scope (as if bound by a ClusterRoleBinding);
//   - the rule comparison of escalation prevention ignores subresource wildcards ("*/scale"), and the missing
//     rules it reports are compacted per resource like the real server's but may differ in detail;
//   - roles and clusterroles are served for GET by name only (no list, watch or writes);
//   - no protobuf, watch, fieldSelector, generateName, update or patch; no finalizer processing on delete.
//
// Tests read and change the ground truth directly (Put*, Delete*, RoleBindings, Bound), queue one-shot faults
// (FailNext), slow every request (SetLatency), inspect Requests, and run a hook before each request is served
// (SetHook) to simulate changes made by someone else at the worst moment.
package kubefake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/jitbot/jitbot/internal/httpfake"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	group    = rbacv1.GroupName // rbac.authorization.k8s.io
	basePath = "/apis/" + group + "/v1"

	resRoleBindings        = "rolebindings"
	resClusterRoleBindings = "clusterrolebindings"
	resRoles               = "roles"
	resClusterRoles        = "clusterroles"
)

// Fault is a failure the server produces once, for the next request after authentication.
type Fault int

// Faults.
const (
	TooManyRequests Fault = iota + 1 // 429 TooManyRequests with Retry-After
	Conflict                         // 409 Conflict (concurrent modification)
	NotFound                         // 404 NotFound for the requested object
	Forbidden                        // 403 Forbidden (the caller lacks the RBAC verb)
	InternalError                    // 500 InternalError
)

func (f Fault) String() string {
	switch f {
	case TooManyRequests:
		return "TooManyRequests"
	case Conflict:
		return "Conflict"
	case NotFound:
		return "NotFound"
	case Forbidden:
		return "Forbidden"
	case InternalError:
		return "InternalError"
	}
	return "Fault(" + strconv.Itoa(int(f)) + ")"
}

// RoleRef names a role for Options.Privileged. Namespace is only meaningful for Kind "Role".
type RoleRef struct {
	Kind      string // "Role" or "ClusterRole"
	Namespace string
	Name      string
}

// Options configures a Server. The zero value is usable.
type Options struct {
	// Token is the bearer token every request must carry; a random one when empty (see Server.Token).
	Token string
	// Namespaces that exist; nil means every namespace exists.
	Namespaces []string
	// Privileged roles hold permissions the caller lacks and it has no bind verb on them: binding one is refused
	// with 403 Forbidden like RBAC escalation prevention does. Only used without CallerRules.
	Privileged []RoleRef
	// CallerRules, when not nil, are the caller's RBAC rules (as if bound by a ClusterRoleBinding, so they apply in
	// every namespace and at the cluster scope), and the server authorizes like kube-apiserver's RBAC: every
	// request needs its verb on its resource (403 Forbidden otherwise), and creating a binding needs either the
	// bind verb on the role it references or every rule of that role (escalation prevention; a role that does
	// not exist then cannot be checked and is refused with 404 NotFound, as kube-apiserver does). When nil, the
	// caller may do anything and holds bind on every role except the Privileged ones - so, like the real server
	// for a caller with bind, a binding to a role that does not exist is accepted.
	CallerRules []rbacv1.PolicyRule
	// Roles and ClusterRoles exist from the start, in addition to the bootstrap ClusterRoles (see
	// NoBootstrapRoles). Add more at any time with PutRole and PutClusterRole.
	Roles        []rbacv1.Role
	ClusterRoles []rbacv1.ClusterRole
	// NoBootstrapRoles leaves out the ClusterRoles every cluster starts with (cluster-admin, admin, edit, view).
	NoBootstrapRoles bool
	// User is the caller's identity quoted in Forbidden messages; "system:serviceaccount:jitbot:jitbot" when empty.
	User string
	// RetryAfter is the Retry-After value (seconds) of TooManyRequests faults; 1 when 0.
	RetryAfter int
	// TLS serves HTTPS with a self-signed certificate (see CAData). client-go's kubeconfig loader only uses a
	// user's credentials for TLS servers, so kubeconfig-based tests need it.
	TLS bool
}

// Request is one request the server received, as it came over the wire.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	// ContentType and Accept are the request headers; Authorization is never recorded.
	ContentType string
	Accept      string
	// Body is the JSON body decoded into generic values (nil when there was none or it was not JSON).
	Body map[string]any
	// Status is the HTTP status answered (0 while the request is being served).
	Status int
}

type objKey struct{ namespace, name string } // namespace "" for cluster-scoped objects

// Server is the fake API server. Its methods are safe for concurrent use.
type Server struct {
	srv    *httptest.Server
	opts   Options
	closed chan struct{}
	once   sync.Once

	mu         sync.Mutex
	rbs        map[objKey]*rbacv1.RoleBinding
	crbs       map[objKey]*rbacv1.ClusterRoleBinding
	roles      map[objKey]*rbacv1.Role
	croles     map[objKey]*rbacv1.ClusterRole
	namespaces map[string]bool // nil: all exist
	rv         int64
	faults     httpfake.Injector[Fault]
	hook       func(Request)
	requests   []*Request
}

// New starts a server; Close it when done.
func New(opts Options) *Server {
	if opts.Token == "" {
		opts.Token = "kubefake-" + randHex(16)
	}
	if opts.User == "" {
		opts.User = "system:serviceaccount:jitbot:jitbot"
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 1
	}
	s := &Server{
		opts:   opts,
		rbs:    map[objKey]*rbacv1.RoleBinding{},
		crbs:   map[objKey]*rbacv1.ClusterRoleBinding{},
		roles:  map[objKey]*rbacv1.Role{},
		croles: map[objKey]*rbacv1.ClusterRole{},
		rv:     1000,
		closed: make(chan struct{}),
	}
	if !opts.NoBootstrapRoles {
		for _, cr := range BootstrapClusterRoles() {
			s.PutClusterRole(cr)
		}
	}
	for _, r := range opts.Roles {
		s.PutRole(r)
	}
	for _, cr := range opts.ClusterRoles {
		s.PutClusterRole(cr)
	}
	if opts.Namespaces != nil {
		s.namespaces = map[string]bool{}
		for _, ns := range opts.Namespaces {
			s.namespaces[ns] = true
		}
	}
	if opts.TLS {
		s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	} else {
		s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	}
	return s
}

// Close shuts the server down, ending requests that are waiting out a latency.
func (s *Server) Close() {
	s.once.Do(func() { close(s.closed) })
	s.srv.Close()
}

// CAData is the PEM certificate of a TLS server (nil without Options.TLS), for certificate-authority-data.
func (s *Server) CAData() []byte {
	if s.srv.TLS == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.srv.URL }

// Token is the bearer token the server accepts.
func (s *Server) Token() string { return s.opts.Token }

// RESTConfig returns a client configuration for the server: its URL, its bearer token, JSON on the wire and no
// client-side rate limiting.
func (s *Server) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:        s.srv.URL,
		BearerToken: s.opts.Token,
		ContentConfig: rest.ContentConfig{
			ContentType:        "application/json",
			AcceptContentTypes: "application/json",
		},
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData()},
		QPS:             -1, // no client-side throttling in tests
		Burst:           -1,
	}
}

// FailNext queues faults: each of the following requests (after authentication) fails with the next one.
func (s *Server) FailNext(f ...Fault) {
	for _, f := range f {
		s.faults.FailNext(1, f)
	}
}

// SetLatency delays every following request by d (0 to stop). A client that gives up is not waited for.
func (s *Server) SetLatency(d time.Duration) { s.faults.SetLatency(d) }

// SetHook runs fn (nil to stop) with every authenticated request before it is served, outside the server's
// lock: fn may change the ground truth (Put*, Delete*) to simulate a concurrent writer.
func (s *Server) SetHook(fn func(Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = fn
}

// Reset clears pending faults, latency, the hook and the request log; stored objects stay.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.Clear()
	s.hook, s.requests = nil, nil
}

// Requests returns a copy of the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = *r
	}
	return out
}

// ClearRequests forgets the requests received so far.
func (s *Server) ClearRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = nil
}

// AddNamespace makes ns exist (only meaningful when Options.Namespaces was set).
func (s *Server) AddNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.namespaces != nil {
		s.namespaces[ns] = true
	}
}

// PutRoleBinding stores rb as is (behind any client's back), assigning uid, resourceVersion and
// creationTimestamp when they are empty. It returns the stored copy.
func (s *Server) PutRoleBinding(rb rbacv1.RoleBinding) rbacv1.RoleBinding {
	return putObject(s, s.rbs, &rb, false)
}

// PutClusterRoleBinding stores crb like PutRoleBinding.
func (s *Server) PutClusterRoleBinding(crb rbacv1.ClusterRoleBinding) rbacv1.ClusterRoleBinding {
	return putObject(s, s.crbs, &crb, true)
}

// DeleteRoleBinding removes a RoleBinding and reports whether it existed.
func (s *Server) DeleteRoleBinding(namespace, name string) bool {
	return deleteObject(s, s.rbs, objKey{namespace, name})
}

// DeleteClusterRoleBinding removes a ClusterRoleBinding and reports whether it existed.
func (s *Server) DeleteClusterRoleBinding(name string) bool {
	return deleteObject(s, s.crbs, objKey{"", name})
}

// PutRole stores a Role (behind any client's back) and returns the stored copy.
func (s *Server) PutRole(r rbacv1.Role) rbacv1.Role { return putObject(s, s.roles, &r, false) }

// PutClusterRole stores a ClusterRole and returns the stored copy.
func (s *Server) PutClusterRole(r rbacv1.ClusterRole) rbacv1.ClusterRole {
	return putObject(s, s.croles, &r, true)
}

// DeleteRole removes a Role and reports whether it existed. Bindings that reference it stay (and grant nothing),
// as in Kubernetes.
func (s *Server) DeleteRole(namespace, name string) bool {
	return deleteObject(s, s.roles, objKey{namespace, name})
}

// DeleteClusterRole removes a ClusterRole and reports whether it existed.
func (s *Server) DeleteClusterRole(name string) bool {
	return deleteObject(s, s.croles, objKey{"", name})
}

// BootstrapClusterRoles returns the user-facing ClusterRoles every cluster starts with. Their rules are a
// shortened version of the real ones (a few core, apps and batch resources), enough to tell the roles apart in
// escalation checks: cluster-admin holds everything; admin holds edit plus roles and rolebindings; edit writes
// workloads; view reads them.
func BootstrapClusterRoles() []rbacv1.ClusterRole {
	read := []string{"get", "list", "watch"}
	write := []string{"create", "update", "patch", "delete", "deletecollection"}
	workloads := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "configmaps", "endpoints", "persistentvolumeclaims"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets", "replicasets"}},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}},
	}
	with := func(verbs []string, extra ...rbacv1.PolicyRule) []rbacv1.PolicyRule {
		var out []rbacv1.PolicyRule
		for _, r := range workloads {
			r.Verbs = verbs
			out = append(out, r)
		}
		return append(out, extra...)
	}
	boot := func(name string, rules []rbacv1.PolicyRule) rbacv1.ClusterRole {
		return rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/bootstrapping": "rbac-defaults"}}, Rules: rules}
	}
	all := append(slices.Clone(read), write...)
	return []rbacv1.ClusterRole{
		boot("cluster-admin", []rbacv1.PolicyRule{
			{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
			{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
		}),
		boot("admin", with(all, rbacv1.PolicyRule{APIGroups: []string{group}, Resources: []string{resRoles, resRoleBindings}, Verbs: all})),
		boot("edit", with(all)),
		boot("view", with(read)),
	}
}

// RoleBinding returns a stored RoleBinding.
func (s *Server) RoleBinding(namespace, name string) (rbacv1.RoleBinding, bool) {
	return getObject(s, s.rbs, objKey{namespace, name})
}

// ClusterRoleBinding returns a stored ClusterRoleBinding.
func (s *Server) ClusterRoleBinding(name string) (rbacv1.ClusterRoleBinding, bool) {
	return getObject(s, s.crbs, objKey{"", name})
}

// RoleBindings returns every stored RoleBinding, ordered by namespace and name.
func (s *Server) RoleBindings() []rbacv1.RoleBinding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listObjects(s.rbs, "", nil)
}

// ClusterRoleBindings returns every stored ClusterRoleBinding, ordered by name.
func (s *Server) ClusterRoleBindings() []rbacv1.ClusterRoleBinding {
	s.mu.Lock()
	defer s.mu.Unlock()
	return listObjects(s.crbs, "", nil)
}

// Bound counts the bindings that give subject the role roleRef: RoleBindings in namespace when namespace is not
// empty, ClusterRoleBindings otherwise. A ServiceAccount subject without a namespace in a RoleBinding means the
// binding's namespace, as in the RBAC authorizer. This is the ground truth of "does the subject hold the role".
func (s *Server) Bound(subject rbacv1.Subject, roleRef rbacv1.RoleRef, namespace string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	if namespace != "" {
		for k, rb := range s.rbs {
			if k.namespace == namespace && rb.RoleRef == roleRef && hasSubject(rb.Subjects, subject, namespace) {
				n++
			}
		}
		return n
	}
	for _, crb := range s.crbs {
		if crb.RoleRef == roleRef && hasSubject(crb.Subjects, subject, "") {
			n++
		}
	}
	return n
}

func hasSubject(subjects []rbacv1.Subject, want rbacv1.Subject, bindingNS string) bool {
	for _, sub := range subjects {
		if sub.Kind == rbacv1.ServiceAccountKind && sub.Namespace == "" {
			sub.Namespace = bindingNS
		}
		if sub.Kind == want.Kind && sub.Name == want.Name && sub.Namespace == want.Namespace && sub.APIGroup == want.APIGroup {
			return true
		}
	}
	return false
}

// stamp assigns server-set metadata; the caller holds s.mu.
func (s *Server) stamp(m metav1.Object) {
	s.rv++
	m.SetResourceVersion(strconv.FormatInt(s.rv, 10))
	if m.GetUID() == "" {
		m.SetUID(types.UID(newUID()))
	}
	if ts := m.GetCreationTimestamp(); ts.IsZero() {
		m.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
	}
	if m.GetGeneration() == 0 {
		m.SetGeneration(1)
	}
}

// object is a stored RBAC kind (RoleBinding, ClusterRoleBinding, Role, ClusterRole): through *T it has object
// metadata, a kind and a deep copy, which is all the fake's storage asks of it.
type object[T any] interface {
	*T
	metav1.Object
	GetObjectKind() schema.ObjectKind
	DeepCopy() *T
}

// putObject stores a copy of obj (cluster-scoped kinds: without namespace) with its server-set metadata filled
// in, and returns another copy.
func putObject[T any, P object[T]](s *Server, m map[objKey]P, obj P, clusterScoped bool) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := P(obj.DeepCopy())
	if clusterScoped {
		c.SetNamespace("")
	}
	s.stamp(c)
	m[objKey{c.GetNamespace(), c.GetName()}] = c
	return *c.DeepCopy()
}

// getObject returns a copy of the object of m under k.
func getObject[T any, P object[T]](s *Server, m map[objKey]P, k objKey) (T, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := m[k]
	if !ok {
		var zero T
		return zero, false
	}
	return *o.DeepCopy(), true
}

// deleteObject removes the object of m under k and reports whether it existed.
func deleteObject[P any](s *Server, m map[objKey]P, k objKey) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := m[k]
	delete(m, k)
	return ok
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if !httpfake.Wait(r.Context(), s.faults.Latency(), s.closed) {
		return
	}

	if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
		// Unauthenticated requests are not recorded: they never reach the API.
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized", nil)
		return
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "reading the request body: "+err.Error(), nil)
		return
	}
	rec := &Request{
		Method:      r.Method,
		Path:        r.URL.Path,
		Query:       r.URL.Query(),
		ContentType: r.Header.Get("Content-Type"),
		Accept:      r.Header.Get("Accept"),
	}
	if len(body) > 0 {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			rec.Body = m
		}
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(*rec)
	}

	sw := &statusWriter{ResponseWriter: w}
	s.route(sw, r, body)
	s.mu.Lock()
	rec.Status = sw.status
	s.mu.Unlock()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// target is the resource a request path names.
type target struct {
	resource  string // rolebindings or clusterrolebindings
	namespace string // "" for cluster scope or the all-namespaces list
	name      string // "" for a collection
}

func parsePath(p string) (target, bool) {
	rest, ok := strings.CutPrefix(p, basePath+"/")
	if !ok {
		return target{}, false
	}
	seg := strings.Split(rest, "/")
	for _, s := range seg {
		if s == "" {
			return target{}, false
		}
	}
	namespaced := func(r string) bool { return r == resRoleBindings || r == resRoles }
	clusterScoped := func(r string) bool { return r == resClusterRoleBindings || r == resClusterRoles }
	switch {
	case len(seg) == 1 && (namespaced(seg[0]) || clusterScoped(seg[0])):
		return target{resource: seg[0]}, true
	case len(seg) == 2 && clusterScoped(seg[0]):
		return target{resource: seg[0], name: seg[1]}, true
	case len(seg) == 3 && seg[0] == "namespaces" && namespaced(seg[2]):
		return target{resource: seg[2], namespace: seg[1]}, true
	case len(seg) == 4 && seg[0] == "namespaces" && namespaced(seg[2]):
		return target{resource: seg[2], namespace: seg[1], name: seg[3]}, true
	}
	return target{}, false
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	t, ok := parsePath(r.URL.Path)
	if !ok {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", &metav1.StatusDetails{})
		return
	}
	if f, ok := s.faults.Take(nil); ok {
		s.writeFault(w, f, t, verbOf(r.Method, t))
		return
	}
	if s.opts.CallerRules != nil && !allows(s.opts.CallerRules, verbOf(r.Method, t), group, t.resource, t.name) {
		s.writeFault(w, Forbidden, t, verbOf(r.Method, t))
		return
	}
	allNamespaces := t.resource == resRoleBindings && t.namespace == ""
	if t.resource == resRoles || t.resource == resClusterRoles {
		if t.name != "" && r.Method == http.MethodGet {
			s.get(w, t)
			return
		}
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("the server does not allow this method on the requested resource (kubefake implements get on %s; got %s)", t.resource, r.Method), &metav1.StatusDetails{})
		return
	}
	switch {
	case t.name == "" && r.Method == http.MethodGet:
		s.list(w, r, t)
	case t.name == "" && r.Method == http.MethodPost && !allNamespaces:
		s.create(w, r, t, body)
	case t.name != "" && r.Method == http.MethodGet:
		s.get(w, t)
	case t.name != "" && r.Method == http.MethodDelete:
		s.delete(w, t, body)
	default:
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("the server does not allow this method on the requested resource (kubefake implements create, get, list and delete; got %s)", r.Method), &metav1.StatusDetails{})
	}
}

func details(t target) *metav1.StatusDetails {
	return &metav1.StatusDetails{Name: t.name, Group: group, Kind: t.resource}
}

// qualified is how the apiserver names a resource in messages: rolebindings.rbac.authorization.k8s.io "name".
func qualified(t target) string {
	if t.name == "" {
		return t.resource + "." + group
	}
	return fmt.Sprintf("%s.%s %q", t.resource, group, t.name)
}

// verbOf is the RBAC verb of a request, as quoted in Forbidden messages.
func verbOf(method string, t target) string {
	switch {
	case method == http.MethodPost:
		return "create"
	case method == http.MethodDelete:
		return "delete"
	case method == http.MethodGet && t.name == "":
		return "list"
	case method == http.MethodGet:
		return "get"
	}
	return strings.ToLower(method)
}

func (s *Server) writeFault(w http.ResponseWriter, f Fault, t target, verb string) {
	switch f {
	case TooManyRequests:
		d := details(t)
		d.RetryAfterSeconds = int32(s.opts.RetryAfter)
		w.Header().Set("Retry-After", strconv.Itoa(s.opts.RetryAfter))
		writeStatus(w, http.StatusTooManyRequests, metav1.StatusReasonTooManyRequests, "Too many requests, please try again later.", d)
	case Conflict:
		writeStatus(w, http.StatusConflict, metav1.StatusReasonConflict,
			fmt.Sprintf("Operation cannot be fulfilled on %s: the object has been modified; please apply your changes to the latest version and try again", qualified(t)), details(t))
	case NotFound:
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, qualified(t)+" not found", details(t))
	case Forbidden:
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
			fmt.Sprintf("%s is forbidden: User %q cannot %s resource %q in API group %q%s", qualified(t), s.opts.User, verb, t.resource, group, scopePhrase(t)), details(t))
	default:
		d := details(t)
		d.Causes = []metav1.StatusCause{{Message: "kubefake: injected failure"}}
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, "Internal error occurred: kubefake: injected failure", d)
	}
}

func scopePhrase(t target) string {
	if t.namespace != "" {
		return fmt.Sprintf(" in the namespace %q", t.namespace)
	}
	return " at the cluster scope"
}

// get answers a get of one object: the object with its kind and apiVersion, or 404.
func (s *Server) get(w http.ResponseWriter, t target) {
	switch t.resource {
	case resRoleBindings:
		getHandler(s, w, t, s.rbs, "RoleBinding")
	case resClusterRoleBindings:
		getHandler(s, w, t, s.crbs, "ClusterRoleBinding")
	case resRoles:
		getHandler(s, w, t, s.roles, "Role")
	default:
		getHandler(s, w, t, s.croles, "ClusterRole")
	}
}

func getHandler[T any, P object[T]](s *Server, w http.ResponseWriter, t target, m map[objKey]P, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := m[objKey{t.namespace, t.name}]
	if !ok {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, qualified(t)+" not found", details(t))
		return
	}
	writeObject(w, http.StatusOK, withType(o, kind))
}

// withType is a copy of o with the kind and apiVersion a single-object answer carries.
func withType[T any, P object[T]](o P, kind string) P {
	c := P(o.DeepCopy())
	c.GetObjectKind().SetGroupVersionKind(rbacv1.SchemeGroupVersion.WithKind(kind))
	return c
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, t target, body []byte) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeStatus(w, http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType,
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json (kubefake speaks JSON only; got %q)", r.Header.Get("Content-Type")), nil)
		return
	}
	wantKind := "RoleBinding"
	if t.resource == resClusterRoleBindings {
		wantKind = "ClusterRoleBinding"
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(body, &tm); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "the object provided is unrecognized: "+err.Error(), nil)
		return
	}
	if (tm.Kind != "" && tm.Kind != wantKind) || (tm.APIVersion != "" && tm.APIVersion != rbacv1.SchemeGroupVersion.String()) {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest,
			fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s) or the kind (%s) is not %s", tm.APIVersion, rbacv1.SchemeGroupVersion, tm.Kind, wantKind), nil)
		return
	}

	var meta metav1.ObjectMeta
	var roleRef rbacv1.RoleRef
	var subjects []rbacv1.Subject
	if t.resource == resRoleBindings {
		var rb rbacv1.RoleBinding
		if err := json.Unmarshal(body, &rb); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding RoleBinding: "+err.Error(), nil)
			return
		}
		if rb.Namespace != "" && rb.Namespace != t.namespace {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "the namespace of the provided object does not match the namespace sent on the request", nil)
			return
		}
		rb.Namespace = t.namespace
		meta, roleRef, subjects = rb.ObjectMeta, rb.RoleRef, rb.Subjects
	} else {
		var crb rbacv1.ClusterRoleBinding
		if err := json.Unmarshal(body, &crb); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding ClusterRoleBinding: "+err.Error(), nil)
			return
		}
		if crb.Namespace != "" {
			// The apiserver clears metadata.namespace on cluster-scoped objects.
			crb.Namespace = ""
		}
		meta, roleRef, subjects = crb.ObjectMeta, crb.RoleRef, crb.Subjects
	}
	t.name = meta.Name

	if causes := validateBinding(t, meta, roleRef, subjects); len(causes) > 0 {
		msgs := make([]string, len(causes))
		for i, c := range causes {
			msgs[i] = c.Field + ": " + c.Message
		}
		d := &metav1.StatusDetails{Name: meta.Name, Group: group, Kind: wantKind, Causes: causes}
		msg := fmt.Sprintf("%s %q is invalid: %s", wantKind, meta.Name, strings.Join(msgs, ", "))
		if len(msgs) > 1 {
			msg = fmt.Sprintf("%s %q is invalid: [%s]", wantKind, meta.Name, strings.Join(msgs, ", "))
		}
		writeStatus(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, msg, d)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	// Admission (NamespaceLifecycle) runs before the RBAC storage's escalation check, which runs before the
	// generic store's existence check.
	if t.namespace != "" && s.namespaces != nil && !s.namespaces[t.namespace] {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("namespaces %q not found", t.namespace),
			&metav1.StatusDetails{Name: t.namespace, Kind: "namespaces"})
		return
	}
	if msg, missing, ok := s.escalationLocked(roleRef, t.namespace); !ok {
		t := t
		if missing {
			// kube-apiserver v1.37 answers 404 naming the binding's resource with the role's name:
			// clusterrolebindings.rbac.authorization.k8s.io "<role>" not found.
			t.name = roleRef.Name
			writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, qualified(t)+" not found", details(t))
			return
		}
		t.name = meta.Name
		writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, qualified(t)+" is forbidden: "+msg, details(t))
		return
	}
	if t.resource == resRoleBindings {
		k := objKey{t.namespace, meta.Name}
		if _, exists := s.rbs[k]; exists {
			writeStatus(w, http.StatusConflict, metav1.StatusReasonAlreadyExists, qualified(t)+" already exists", details(t))
			return
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: cleanMeta(meta), RoleRef: roleRef, Subjects: subjects}
		rb.Namespace = t.namespace
		s.stamp(rb)
		s.rbs[k] = rb
		writeObject(w, http.StatusCreated, withType(rb, "RoleBinding"))
		return
	}
	if _, exists := s.crbs[objKey{"", meta.Name}]; exists {
		writeStatus(w, http.StatusConflict, metav1.StatusReasonAlreadyExists, qualified(t)+" already exists", details(t))
		return
	}
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: cleanMeta(meta), RoleRef: roleRef, Subjects: subjects}
	s.stamp(crb)
	s.crbs[objKey{"", meta.Name}] = crb
	writeObject(w, http.StatusCreated, withType(crb, "ClusterRoleBinding"))
}

// cleanMeta keeps what a client may set on create; the server owns the rest.
func cleanMeta(m metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Labels: m.Labels, Annotations: m.Annotations, OwnerReferences: m.OwnerReferences, Finalizers: m.Finalizers}
}

// escalationLocked is RBAC escalation prevention for a new binding to ref (pkg/registry/rbac/.../policybased):
// allowed with the bind verb on the role; otherwise the role's rules must all be held by the caller, and a role
// that does not exist cannot be checked (roleMissing: the real server then answers 404, see create). It
// returns the reason of a refusal; the caller holds s.mu.
func (s *Server) escalationLocked(ref rbacv1.RoleRef, namespace string) (reason string, roleMissing, ok bool) {
	held := "user %q (groups=" + callerGroups(s.opts.User) + ") is attempting to grant RBAC permissions not currently held:\n%s"
	if s.opts.CallerRules == nil {
		if s.privileged(ref, namespace) {
			return fmt.Sprintf(held, s.opts.User, `{APIGroups:["*"], Resources:["*"], Verbs:["*"]}`), false, false
		}
		return "", false, true
	}
	res := resClusterRoles
	if ref.Kind == "Role" {
		res = resRoles
	}
	if allows(s.opts.CallerRules, "bind", group, res, ref.Name) {
		return "", false, true // BindingAuthorized: no existence check, no rule comparison
	}
	var rules []rbacv1.PolicyRule
	if ref.Kind == "Role" {
		r, ok := s.roles[objKey{namespace, ref.Name}]
		if !ok {
			return "", true, false
		}
		rules = r.Rules
	} else {
		r, ok := s.croles[objKey{"", ref.Name}]
		if !ok {
			return "", true, false
		}
		rules = r.Rules
	}
	if missing := uncovered(s.opts.CallerRules, rules); len(missing) > 0 {
		return fmt.Sprintf(held, s.opts.User, strings.Join(missing, "\n")), false, false
	}
	return "", false, true
}

// callerGroups is the group list kube-apiserver prints for user in an escalation refusal (%q-quoted, as Go
// prints a []string with %q): a ServiceAccount's token authenticates it in system:serviceaccounts and
// system:serviceaccounts:<namespace> (checked against kube-apiserver v1.37 by TestAPIServerMatchesKubefake),
// any other user is modelled as a member of system:authenticated only.
func callerGroups(user string) string {
	groups := []string{"system:authenticated"}
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		ns, _, _ := strings.Cut(rest, ":")
		groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
	}
	return fmt.Sprintf("%q", groups)
}

// allows reports whether rules grant verb on group/resource (named name, "" for collections).
func allows(rules []rbacv1.PolicyRule, verb, apiGroup, resource, name string) bool {
	for _, r := range rules {
		if has(r.Verbs, verb) && has(r.APIGroups, apiGroup) && has(r.Resources, resource) &&
			(len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name))) {
			return true
		}
	}
	return false
}

func has(list []string, v string) bool { return slices.Contains(list, "*") || slices.Contains(list, v) }

// uncovered describes what of servant owner does not hold, the way escalation prevention reports it: the missing
// (group, resource[, name]) or non-resource URL parts, the verbs of each merged into one rule (CompactRules),
// each printed like rbacv1helpers.CompactString, sorted. A simplification of rbac validation.Covers: no
// subresource wildcards ("*/scale"), and non-resource URLs match exactly or by a trailing "*".
func uncovered(owner, servant []rbacv1.PolicyRule) []string {
	type part struct{ group, resource, name, url string }
	var order []part
	verbs := map[part][]string{}
	miss := func(p part, verb string) {
		if _, ok := verbs[p]; !ok {
			order = append(order, p)
		}
		if !slices.Contains(verbs[p], verb) {
			verbs[p] = append(verbs[p], verb)
		}
	}
	for _, r := range servant {
		for _, verb := range r.Verbs {
			for _, u := range r.NonResourceURLs {
				ok := false
				for _, o := range owner {
					if !has(o.Verbs, verb) {
						continue
					}
					for _, ou := range o.NonResourceURLs {
						if ou == u || ou == "*" || (strings.HasSuffix(ou, "*") && strings.HasPrefix(u, strings.TrimSuffix(ou, "*"))) {
							ok = true
						}
					}
				}
				if !ok {
					miss(part{url: u}, verb)
				}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					names := r.ResourceNames
					if len(names) == 0 {
						names = []string{""}
					}
					for _, n := range names {
						if !allowsExact(owner, verb, g, res, n) {
							miss(part{group: g, resource: res, name: n}, verb)
						}
					}
				}
			}
		}
	}
	out := make([]string, 0, len(order))
	for _, p := range order {
		var b strings.Builder
		b.WriteByte('{')
		if p.url != "" {
			fmt.Fprintf(&b, "NonResourceURLs:%q, ", []string{p.url})
		} else {
			fmt.Fprintf(&b, "APIGroups:%q, Resources:%q, ", []string{p.group}, []string{p.resource})
			if p.name != "" {
				fmt.Fprintf(&b, "ResourceNames:%q, ", []string{p.name})
			}
		}
		fmt.Fprintf(&b, "Verbs:%q}", verbs[p])
		out = append(out, b.String())
	}
	slices.Sort(out)
	return out
}

// allowsExact is allows for a servant rule part that may itself be a wildcard: "*" in the servant is covered
// only by "*" in the owner.
func allowsExact(owner []rbacv1.PolicyRule, verb, apiGroup, resource, name string) bool {
	match := func(list []string, v string) bool {
		if v == "*" {
			return slices.Contains(list, "*")
		}
		return has(list, v)
	}
	for _, o := range owner {
		if match(o.Verbs, verb) && match(o.APIGroups, apiGroup) && match(o.Resources, resource) &&
			(len(o.ResourceNames) == 0 || (name != "" && slices.Contains(o.ResourceNames, name))) {
			return true
		}
	}
	return false
}

func (s *Server) privileged(ref rbacv1.RoleRef, namespace string) bool {
	for _, p := range s.opts.Privileged {
		if p.Kind != ref.Kind || p.Name != ref.Name {
			continue
		}
		if p.Kind == "Role" && p.Namespace != namespace {
			continue
		}
		return true
	}
	return false
}

// validateBinding follows the apiserver's validation of RBAC bindings (pkg/apis/rbac/validation).
func validateBinding(t target, meta metav1.ObjectMeta, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []metav1.StatusCause {
	var causes []metav1.StatusCause
	bad := func(typ metav1.CauseType, field, msg string) {
		causes = append(causes, metav1.StatusCause{Type: typ, Field: field, Message: msg})
	}
	switch {
	case meta.Name == "" && meta.GenerateName != "":
		bad(metav1.CauseTypeFieldValueNotSupported, "metadata.generateName", "Unsupported value: kubefake does not implement generateName")
	case meta.Name == "":
		bad(metav1.CauseTypeFieldValueRequired, "metadata.name", "Required value: name or generateName is required")
	default:
		for _, msg := range validPathSegment(meta.Name) {
			bad(metav1.CauseTypeFieldValueInvalid, "metadata.name", fmt.Sprintf("Invalid value: %q: %s", meta.Name, msg))
		}
	}
	for k, v := range meta.Labels {
		for _, msg := range validation.IsQualifiedName(k) {
			bad(metav1.CauseTypeFieldValueInvalid, "metadata.labels", fmt.Sprintf("Invalid value: %q: %s", k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			bad(metav1.CauseTypeFieldValueInvalid, "metadata.labels", fmt.Sprintf("Invalid value: %q: %s", v, msg))
		}
	}
	for k := range meta.Annotations {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			bad(metav1.CauseTypeFieldValueInvalid, "metadata.annotations", fmt.Sprintf("Invalid value: %q: %s", k, msg))
		}
	}

	if ref.APIGroup != group {
		bad(metav1.CauseTypeFieldValueNotSupported, "roleRef.apiGroup", fmt.Sprintf("Unsupported value: %q: supported values: %q", ref.APIGroup, group))
	}
	switch {
	case t.resource == resRoleBindings && ref.Kind != "Role" && ref.Kind != "ClusterRole":
		bad(metav1.CauseTypeFieldValueNotSupported, "roleRef.kind", fmt.Sprintf("Unsupported value: %q: supported values: \"Role\", \"ClusterRole\"", ref.Kind))
	case t.resource == resClusterRoleBindings && ref.Kind != "ClusterRole":
		bad(metav1.CauseTypeFieldValueNotSupported, "roleRef.kind", fmt.Sprintf("Unsupported value: %q: supported values: \"ClusterRole\"", ref.Kind))
	}
	if ref.Name == "" {
		bad(metav1.CauseTypeFieldValueRequired, "roleRef.name", "Required value")
	} else {
		for _, msg := range validPathSegment(ref.Name) {
			bad(metav1.CauseTypeFieldValueInvalid, "roleRef.name", fmt.Sprintf("Invalid value: %q: %s", ref.Name, msg))
		}
	}

	for i, sub := range subjects {
		f := fmt.Sprintf("subjects[%d]", i)
		if sub.Name == "" {
			bad(metav1.CauseTypeFieldValueRequired, f+".name", "Required value")
		}
		switch sub.Kind {
		case rbacv1.ServiceAccountKind:
			if sub.Name != "" {
				for _, msg := range validation.IsDNS1123Subdomain(sub.Name) {
					bad(metav1.CauseTypeFieldValueInvalid, f+".name", fmt.Sprintf("Invalid value: %q: %s", sub.Name, msg))
				}
			}
			if sub.APIGroup != "" {
				bad(metav1.CauseTypeFieldValueNotSupported, f+".apiGroup", fmt.Sprintf("Unsupported value: %q: supported values: \"\"", sub.APIGroup))
			}
			if t.resource == resClusterRoleBindings && sub.Namespace == "" {
				bad(metav1.CauseTypeFieldValueRequired, f+".namespace", "Required value")
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if sub.APIGroup != group {
				bad(metav1.CauseTypeFieldValueNotSupported, f+".apiGroup", fmt.Sprintf("Unsupported value: %q: supported values: %q", sub.APIGroup, group))
			}
		default:
			bad(metav1.CauseTypeFieldValueNotSupported, f+".kind", fmt.Sprintf("Unsupported value: %q: supported values: \"ServiceAccount\", \"User\", \"Group\"", sub.Kind))
		}
	}
	return causes
}

// validPathSegment is the apiserver's rule for RBAC object names (path.ValidatePathSegmentName).
func validPathSegment(name string) []string {
	if name == "." || name == ".." {
		return []string{fmt.Sprintf("may not be '%s'", name)}
	}
	var out []string
	for _, bad := range []string{"/", "%"} {
		if strings.Contains(name, bad) {
			out = append(out, fmt.Sprintf("may not contain '%s'", bad))
		}
	}
	return out
}

func (s *Server) delete(w http.ResponseWriter, t target, body []byte) {
	var opts metav1.DeleteOptions
	if len(body) > 0 {
		if err := json.Unmarshal(body, &opts); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "decoding DeleteOptions: "+err.Error(), nil)
			return
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var meta *metav1.ObjectMeta
	if t.resource == resRoleBindings {
		if rb, ok := s.rbs[objKey{t.namespace, t.name}]; ok {
			meta = &rb.ObjectMeta
		}
	} else if crb, ok := s.crbs[objKey{"", t.name}]; ok {
		meta = &crb.ObjectMeta
	}
	if meta == nil {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, qualified(t)+" not found", details(t))
		return
	}
	if p := opts.Preconditions; p != nil {
		// rest.BeforeDelete (k8s.io/apiserver/pkg/registry/rest/delete.go) checks the preconditions before the
		// storage does, and names the object by Kind (GroupResource{Group, Resource: Kind}).
		kind := "ClusterRoleBinding"
		if t.resource == resRoleBindings {
			kind = "RoleBinding"
		}
		var failed string
		switch {
		case p.UID != nil && *p.UID != meta.UID:
			failed = fmt.Sprintf("the UID in the precondition (%s) does not match the UID in record (%s). The object might have been deleted and then recreated", *p.UID, meta.UID)
		case p.ResourceVersion != nil && *p.ResourceVersion != meta.ResourceVersion:
			failed = fmt.Sprintf("the ResourceVersion in the precondition (%s) does not match the ResourceVersion in record (%s). The object might have been modified", *p.ResourceVersion, meta.ResourceVersion)
		}
		if failed != "" {
			writeStatus(w, http.StatusConflict, metav1.StatusReasonConflict,
				fmt.Sprintf("Operation cannot be fulfilled on %s.%s %q: %s", kind, group, t.name, failed),
				&metav1.StatusDetails{Name: t.name, Group: group, Kind: kind})
			return
		}
	}
	uid := meta.UID
	if t.resource == resRoleBindings {
		delete(s.rbs, objKey{t.namespace, t.name})
	} else {
		delete(s.crbs, objKey{"", t.name})
	}
	s.rv++
	d := details(t)
	d.UID = uid
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusSuccess,
		Details:  d,
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, t target) {
	q := r.URL.Query()
	if fs := q.Get("fieldSelector"); fs != "" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "kubefake does not implement fieldSelector", nil)
		return
	}
	if q.Get("watch") == "true" || q.Get("watch") == "1" {
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed, "kubefake does not implement watch", nil)
		return
	}
	sel, err := parseSelector(q.Get("labelSelector"))
	if err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "unable to parse requirement: "+err.Error(), nil)
		return
	}
	limit := 0
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 0 {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, fmt.Sprintf("invalid limit %q", l), nil)
			return
		}
	}
	after := ""
	if c := q.Get("continue"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "continue key is not valid: "+err.Error(), nil)
			return
		}
		after = string(b)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	rv := strconv.FormatInt(s.rv, 10)
	if t.resource == resRoleBindings {
		items := listObjects(s.rbs, t.namespace, sel)
		items = slices.DeleteFunc(items, func(rb rbacv1.RoleBinding) bool { return after != "" && rb.Namespace+"/"+rb.Name <= after })
		list := rbacv1.RoleBindingList{TypeMeta: metav1.TypeMeta{Kind: "RoleBindingList", APIVersion: rbacv1.SchemeGroupVersion.String()}}
		list.ResourceVersion = rv
		if limit > 0 && len(items) > limit {
			items = items[:limit]
			last := items[limit-1]
			list.Continue = base64.RawURLEncoding.EncodeToString([]byte(last.Namespace + "/" + last.Name))
		}
		list.Items = items
		if list.Items == nil {
			list.Items = []rbacv1.RoleBinding{}
		}
		writeJSON(w, http.StatusOK, list)
		return
	}
	items := listObjects(s.crbs, "", sel)
	items = slices.DeleteFunc(items, func(crb rbacv1.ClusterRoleBinding) bool { return after != "" && "/"+crb.Name <= after })
	list := rbacv1.ClusterRoleBindingList{TypeMeta: metav1.TypeMeta{Kind: "ClusterRoleBindingList", APIVersion: rbacv1.SchemeGroupVersion.String()}}
	list.ResourceVersion = rv
	if limit > 0 && len(items) > limit {
		items = items[:limit]
		list.Continue = base64.RawURLEncoding.EncodeToString([]byte("/" + items[limit-1].Name))
	}
	list.Items = items
	if list.Items == nil {
		list.Items = []rbacv1.ClusterRoleBinding{}
	}
	writeJSON(w, http.StatusOK, list)
}

// listObjects returns copies of the objects of m in namespace ("" = all) matching sel, sorted by namespace/name;
// the caller holds s.mu.
func listObjects[T any, P object[T]](m map[objKey]P, namespace string, sel selector) []T {
	var out []T
	for k, o := range m {
		if (namespace == "" || k.namespace == namespace) && sel.matches(o.GetLabels()) {
			out = append(out, *o.DeepCopy()) // list items carry no kind/apiVersion, as from the apiserver
		}
	}
	slices.SortFunc(out, func(a, b T) int {
		pa, pb := P(&a), P(&b)
		return strings.Compare(pa.GetNamespace()+"/"+pa.GetName(), pb.GetNamespace()+"/"+pb.GetName())
	})
	return out
}

// requirement is one term of an equality-based label selector.
type requirement struct {
	key, value string
	op         string // "=", "!=", "exists", "!exists"
}

type selector []requirement

func (sel selector) matches(labels map[string]string) bool {
	for _, r := range sel {
		v, ok := labels[r.key]
		switch r.op {
		case "=":
			if !ok || v != r.value {
				return false
			}
		case "!=":
			if ok && v == r.value {
				return false
			}
		case "exists":
			if !ok {
				return false
			}
		case "!exists":
			if ok {
				return false
			}
		}
	}
	return true
}

// parseSelector parses the equality-based selector syntax: comma-separated key=value, key==value, key!=value,
// key and !key. Set-based terms (in, notin) are refused as unsupported.
func parseSelector(s string) (selector, error) {
	var sel selector
	if strings.TrimSpace(s) == "" {
		return sel, nil
	}
	for _, term := range strings.Split(s, ",") {
		term = strings.TrimSpace(term)
		var r requirement
		switch {
		case strings.Contains(term, " in ") || strings.Contains(term, " notin ") || strings.Contains(term, "("):
			return nil, fmt.Errorf("%q: kubefake supports only =, ==, != and existence terms", term)
		case strings.Contains(term, "!="):
			k, v, _ := strings.Cut(term, "!=")
			r = requirement{key: strings.TrimSpace(k), value: strings.TrimSpace(v), op: "!="}
		case strings.Contains(term, "=="):
			k, v, _ := strings.Cut(term, "==")
			r = requirement{key: strings.TrimSpace(k), value: strings.TrimSpace(v), op: "="}
		case strings.Contains(term, "="):
			k, v, _ := strings.Cut(term, "=")
			r = requirement{key: strings.TrimSpace(k), value: strings.TrimSpace(v), op: "="}
		case strings.HasPrefix(term, "!"):
			r = requirement{key: strings.TrimSpace(term[1:]), op: "!exists"}
		default:
			r = requirement{key: term, op: "exists"}
		}
		if errs := validation.IsQualifiedName(r.key); len(errs) > 0 {
			return nil, fmt.Errorf("key %q: %s", r.key, strings.Join(errs, "; "))
		}
		if r.op == "=" || r.op == "!=" {
			if errs := validation.IsValidLabelValue(r.value); len(errs) > 0 {
				return nil, fmt.Errorf("value %q: %s", r.value, strings.Join(errs, "; "))
			}
		}
		sel = append(sel, r)
	}
	return sel, nil
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string, d *metav1.StatusDetails) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Message:  msg,
		Reason:   reason,
		Details:  d,
		Code:     int32(code),
	}
	writeJSON(w, code, st)
}

func writeObject(w http.ResponseWriter, code int, obj any) { writeJSON(w, code, obj) }

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
