package app

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/jitbot/jitbot/api"
	"github.com/jitbot/jitbot/policy"
	"github.com/jitbot/jitbot/store"
	"github.com/jitbot/jitbot/workload"
)

// BuildAuthenticator verifies the API's callers: OIDC ID tokens of the policy's issuers, then jitbot API
// tokens when the store keeps them. Issuers are not contacted here: an issuer that is down refuses its
// tokens (issuer_unavailable) until it is back, without stopping jitbot.
func BuildAuthenticator(ctx context.Context, pol *policy.Policy, st store.Store, client *http.Client, now func() time.Time) (workload.Authenticator, error) {
	var auths []workload.Authenticator
	if len(pol.Issuers) > 0 {
		var cfgs []workload.IssuerConfig
		for _, name := range pol.IssuerNames() {
			iss := pol.Issuers[name]
			cfgs = append(cfgs, workload.IssuerConfig{Name: name, URL: iss.URL, Audiences: iss.Audiences, Leeway: iss.Leeway, RequiredClaims: iss.RequiredClaims})
		}
		o, err := workload.NewOIDC(ctx, cfgs, workload.OIDCOptions{HTTPClient: client, Now: now})
		if err != nil {
			return nil, fmt.Errorf("policy issuers: %w", err)
		}
		auths = append(auths, o)
	}
	if ts, ok := st.(workload.TokenStore); ok {
		auths = append(auths, workload.NewTokens(ts, workload.TokensOptions{Now: now}))
	}
	return workload.Chain(auths...), nil
}

// apiWaker forwards committed events to the API server once it exists (it is built after the bus).
type apiWaker struct{ srv atomic.Pointer[api.Server] }

func (w *apiWaker) Publish(ctx context.Context, events ...store.AuditEvent) {
	if s := w.srv.Load(); s != nil {
		s.Publish(ctx, events...)
	}
}
