package workload_test

import (
	"testing"

	"github.com/jitbot/jitbot/workload"
	"github.com/jitbot/jitbot/workload/oidcfake"
)

// BenchmarkOIDCAuthenticate: one verification of a GitHub-shaped RS256 token with keys cached (the cost of
// every API call made with an OIDC token).
func BenchmarkOIDCAuthenticate(b *testing.B) {
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer iss.Close()
	v, err := workload.NewOIDC(b.Context(), []workload.IssuerConfig{{Name: "github", URL: iss.URL(), Audiences: []string{oidcfake.DefaultAudience}}}, workload.OIDCOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tok := iss.Sign(oidcfake.GitHubActions("acme/web", "refs/heads/main", "production"))
	if _, err := v.Authenticate(b.Context(), tok); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Authenticate(b.Context(), tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokensAuthenticate: one API token check (a store read; last-used writes are at most once a minute).
func BenchmarkTokensAuthenticate(b *testing.B) {
	for _, be := range tokenBackends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			tokens := workload.NewTokens(st, workload.TokensOptions{})
			plain, _, err := tokens.Create(b.Context(), "bench")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := tokens.Authenticate(b.Context(), plain); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
