package kube_test

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"gopkg.in/yaml.v3"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/jitbot/jitbot/grants/kube/kubefake"
)

const admissionPolicyFile = "../../docs/providers/kubernetes-admission-policy.yaml"

// strictDecode decodes one YAML document into out, refusing fields the type does not have (a misspelt field
// would otherwise be dropped silently, and the API server would apply a weaker policy than the file says).
func strictDecode(t *testing.T, doc string, out any) {
	t.Helper()
	var generic any
	if err := yaml.Unmarshal([]byte(doc), &generic); err != nil {
		t.Fatalf("YAML: %v", err)
	}
	j, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		t.Fatalf("strict decode into %T: %v", out, err)
	}
}

func loadAdmissionPolicy(t *testing.T) (admissionv1.ValidatingAdmissionPolicy, admissionv1.ValidatingAdmissionPolicyBinding) {
	t.Helper()
	raw, err := os.ReadFile(admissionPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(raw), "\n---\n")
	if len(docs) != 2 {
		t.Fatalf("%d YAML documents, want the policy and its binding", len(docs))
	}
	var pol admissionv1.ValidatingAdmissionPolicy
	var bind admissionv1.ValidatingAdmissionPolicyBinding
	strictDecode(t, docs[0], &pol)
	strictDecode(t, docs[1], &bind)
	if pol.APIVersion != "admissionregistration.k8s.io/v1" || pol.Kind != "ValidatingAdmissionPolicy" ||
		bind.APIVersion != "admissionregistration.k8s.io/v1" || bind.Kind != "ValidatingAdmissionPolicyBinding" {
		t.Fatalf("kinds: %s %s, %s %s", pol.APIVersion, pol.Kind, bind.APIVersion, bind.Kind)
	}
	return pol, bind
}

// celProgram compiles a CEL expression in an environment with the variables a ValidatingAdmissionPolicy sees
// (typed dynamically here; the API server types object by the resource's schema).
func celProgram(t *testing.T, expr string) cel.Program {
	t.Helper()
	env, err := cel.NewEnv(
		cel.Variable("object", cel.DynType), cel.Variable("oldObject", cel.DynType),
		cel.Variable("request", cel.DynType), cel.Variable("variables", cel.DynType), cel.Variable("params", cel.DynType),
	)
	if err != nil {
		t.Fatal(err)
	}
	ast, iss := env.Compile(expr)
	if iss.Err() != nil {
		t.Fatalf("CEL %q: %v", expr, iss.Err())
	}
	prg, err := env.Program(ast)
	if err != nil {
		t.Fatalf("CEL %q: %v", expr, err)
	}
	return prg
}

func evalCEL(t *testing.T, prg cel.Program, vars map[string]any) any {
	t.Helper()
	out, _, err := prg.Eval(vars)
	if err != nil {
		t.Fatalf("CEL eval: %v", err)
	}
	return out.Value()
}

func toMap(t *testing.T, obj any) map[string]any {
	t.Helper()
	j, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// admit runs the policy the way the API server does for one CREATE: match conditions, then variables, then
// every validation; it returns the failed validations' messages ("" when admitted) and whether it matched.
func admit(t *testing.T, pol admissionv1.ValidatingAdmissionPolicy, user string, obj any) (matched bool, denied []string) {
	t.Helper()
	return admitOp(t, pol, user, "CREATE", toMap(t, obj), nil)
}

// admitOp is admit for any operation: object is nil for DELETE, oldObject nil for CREATE.
func admitOp(t *testing.T, pol admissionv1.ValidatingAdmissionPolicy, user, op string, object, oldObject map[string]any) (matched bool, denied []string) {
	t.Helper()
	vars := map[string]any{
		"object": object, "oldObject": oldObject, "params": nil,
		"request": map[string]any{"operation": op, "userInfo": map[string]any{"username": user}},
	}
	for _, mc := range pol.Spec.MatchConditions {
		if evalCEL(t, celProgram(t, mc.Expression), vars) != true {
			return false, nil
		}
	}
	variables := map[string]any{}
	vars["variables"] = variables
	for _, v := range pol.Spec.Variables {
		variables[v.Name] = evalCEL(t, celProgram(t, v.Expression), vars)
	}
	for _, v := range pol.Spec.Validations {
		if evalCEL(t, celProgram(t, v.Expression), vars) == true {
			continue
		}
		msg := v.Message
		if v.MessageExpression != "" {
			msg, _ = evalCEL(t, celProgram(t, v.MessageExpression), vars).(string)
		}
		denied = append(denied, msg)
	}
	return true, denied
}

// TestAdmissionPolicy: the shipped ValidatingAdmissionPolicy parses strictly into admissionregistration/v1, its
// binding denies, it matches the binding resources, and its CEL admits exactly the bindings jitbot makes to
// the roles it names: real bindings created by the adapter pass; a binding of the bot's own granting role (the
// escalation the policy exists for), of a Role from another namespace, without jitbot's label or with two
// subjects is refused; other users are not matched.
func TestAdmissionPolicy(t *testing.T) {
	pol, bind := loadAdmissionPolicy(t)
	if bind.Spec.PolicyName != pol.Name || !slices.Equal(bind.Spec.ValidationActions, []admissionv1.ValidationAction{admissionv1.Deny}) {
		t.Fatalf("binding %+v does not deny for policy %s", bind.Spec, pol.Name)
	}
	if pol.Spec.FailurePolicy == nil || *pol.Spec.FailurePolicy != admissionv1.Fail {
		t.Error("failurePolicy must be Fail: a policy that cannot be evaluated must refuse")
	}
	var resources, ops []string
	for _, r := range pol.Spec.MatchConstraints.ResourceRules {
		resources = append(resources, r.Resources...)
		for _, op := range r.Operations {
			ops = append(ops, string(op))
		}
	}
	for _, want := range []string{"rolebindings", "clusterrolebindings"} {
		if !slices.Contains(resources, want) {
			t.Errorf("matchConstraints do not cover %s", want)
		}
	}
	for _, want := range []string{"CREATE", "UPDATE", "DELETE"} {
		if !slices.Contains(ops, want) {
			t.Errorf("matchConstraints do not cover %s", want)
		}
	}
	const bot = "system:serviceaccount:jitbot:jitbot"

	// Bindings exactly as the adapter creates them (read back from the fake).
	srv := newFake(kubefake.Options{})
	t.Cleanup(srv.Close)
	p := newProvider(t, srv)
	for _, a := range []map[string]string{
		{"namespace": "payments", "role": "debugger"},
		{"namespace": "payments", "cluster_role": "edit"},
		{"cluster_role": "view"},
	} {
		if _, err := p.Grant(t.Context(), assignment("g-vap-"+strings.Join([]string{a["namespace"], a["role"], a["cluster_role"]}, "-"), "user:alice", a)); err != nil {
			t.Fatal(err)
		}
	}
	var made []any
	for _, rb := range srv.RoleBindings() {
		made = append(made, rb)
	}
	for _, crb := range srv.ClusterRoleBindings() {
		made = append(made, crb)
	}
	if len(made) != 3 {
		t.Fatalf("%d bindings made", len(made))
	}
	for _, obj := range made {
		if matched, denied := admit(t, pol, bot, obj); !matched || len(denied) > 0 {
			t.Errorf("jitbot's own binding %+v: matched %v, denied %q", obj, matched, denied)
		}
	}

	labels := map[string]string{"app.kubernetes.io/managed-by": "jitbot"}
	alice := rbacv1.Subject{Kind: "User", APIGroup: rbacGroup, Name: "alice"}
	mallory := rbacv1.Subject{Kind: "User", APIGroup: rbacGroup, Name: "mallory"}
	refused := map[string]any{
		"the bot's own granting role": rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: labels},
			Subjects: []rbacv1.Subject{mallory}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "jitbot-granter"}},
		"cluster-admin": rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: labels},
			Subjects: []rbacv1.Subject{mallory}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "cluster-admin"}},
		"a Role of that name in another namespace": rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "kube-system", Labels: labels},
			Subjects: []rbacv1.Subject{alice}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "Role", Name: "debugger"}},
		"no jitbot label": rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x"},
			Subjects: []rbacv1.Subject{alice}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "view"}},
		"two subjects": rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: labels},
			Subjects: []rbacv1.Subject{alice, mallory}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "view"}},
	}
	for what, obj := range refused {
		matched, denied := admit(t, pol, bot, obj)
		if !matched || len(denied) == 0 {
			t.Errorf("%s: matched %v, denied %q; want refused", what, matched, denied)
		}
		t.Logf("%s: refused: %q", what, denied)
	}
	// Deletes: the bot may delete its own bindings (what Revoke does), not anyone else's.
	for _, obj := range made {
		if matched, denied := admitOp(t, pol, bot, "DELETE", nil, toMap(t, obj)); !matched || len(denied) > 0 {
			t.Errorf("deleting jitbot's own binding: matched %v, denied %q", matched, denied)
		}
	}
	human := rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-edit", Namespace: "payments", Labels: map[string]string{"app.kubernetes.io/managed-by": "Helm"}},
		Subjects: []rbacv1.Subject{alice}, RoleRef: rbacv1.RoleRef{APIGroup: rbacGroup, Kind: "ClusterRole", Name: "edit"}}
	if matched, denied := admitOp(t, pol, bot, "DELETE", nil, toMap(t, human)); !matched || len(denied) == 0 {
		t.Errorf("the bot deleting a human's binding: matched %v, denied %q; want refused", matched, denied)
	}
	unlabelled := human
	unlabelled.Labels = nil
	if matched, denied := admitOp(t, pol, bot, "DELETE", nil, toMap(t, unlabelled)); !matched || len(denied) == 0 {
		t.Errorf("the bot deleting an unlabelled binding: matched %v, denied %q; want refused", matched, denied)
	}
	// Other identities (cluster admins, controllers) are not this policy's business.
	if matched, _ := admit(t, pol, "kubernetes-admin", refused["cluster-admin"]); matched {
		t.Error("the policy matches users other than the bot")
	}
}

// strictDecodeLoose decodes a YAML document into out, ignoring fields out does not have.
func strictDecodeLoose(t *testing.T, doc string, out any) {
	t.Helper()
	var generic any
	if err := yaml.Unmarshal([]byte(doc), &generic); err != nil {
		t.Fatalf("YAML: %v", err)
	}
	j, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(j, out); err != nil {
		t.Fatal(err)
	}
}
