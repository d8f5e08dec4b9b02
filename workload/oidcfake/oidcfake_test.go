package oidcfake_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/jitbot/jitbot/workload/oidcfake"
)

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func TestDiscoveryJWKSAndRotation(t *testing.T) {
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	var doc struct {
		Issuer  string   `json:"issuer"`
		JWKSURI string   `json:"jwks_uri"`
		Algs    []string `json:"id_token_signing_alg_values_supported"`
	}
	if code := getJSON(t, iss.URL()+"/.well-known/openid-configuration", &doc); code != 200 || doc.Issuer != iss.URL() || doc.Algs[0] != "RS256" {
		t.Fatalf("discovery %d %+v", code, doc)
	}
	kids := func() []string {
		var set jose.JSONWebKeySet
		if code := getJSON(t, doc.JWKSURI, &set); code != 200 {
			t.Fatalf("jwks status %d", code)
		}
		var out []string
		for _, k := range set.Keys {
			if !k.IsPublic() || k.Use != "sig" {
				t.Fatalf("published key %s is not a public signing key", k.KeyID)
			}
			out = append(out, k.KeyID)
		}
		return out
	}
	k1 := iss.KeyID()
	if got := kids(); len(got) != 1 || got[0] != k1 {
		t.Fatalf("kids %v, want [%s]", got, k1)
	}
	k2 := iss.Rotate()
	if got := kids(); len(got) != 2 || got[0] != k2 || got[1] != k1 {
		t.Fatalf("after one rotation kids %v, want [%s %s]", got, k2, k1)
	}
	k3 := iss.Rotate()
	if got := kids(); len(got) != 2 || got[0] != k3 || got[1] != k2 {
		t.Fatalf("after two rotations kids %v, want [%s %s]", got, k3, k2)
	}
	iss.SetAvailable(false)
	if code := getJSON(t, doc.JWKSURI, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("unavailable jwks status %d", code)
	}
	if iss.DiscoveryRequests() != 1 || iss.JWKSRequests() != 4 {
		t.Fatalf("counters %d %d", iss.DiscoveryRequests(), iss.JWKSRequests())
	}
}

func TestSignDefaultsAndOptions(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	iss, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Now: func() time.Time { return now }, Audience: "aud-x"})
	if err != nil {
		t.Fatal(err)
	}
	defer iss.Close()
	claims := func(tok string) map[string]any {
		t.Helper()
		p, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	c := claims(iss.Sign(map[string]any{"repository": "acme/web"}))
	if c["iss"] != iss.URL() || c["aud"] != "aud-x" || c["iat"] != float64(now.Unix()) || c["exp"] != float64(now.Unix()+300) || c["repository"] != "acme/web" || c["jti"] == "" {
		t.Fatalf("defaults: %v", c)
	}
	if c := claims(iss.SignWith(nil, oidcfake.Expired())); c["exp"].(float64) >= float64(now.Unix()) {
		t.Fatalf("Expired exp %v", c["exp"])
	}
	if c := claims(iss.SignWith(nil, oidcfake.NotYetValid())); c["nbf"].(float64) <= float64(now.Unix()) {
		t.Fatalf("NotYetValid nbf %v", c["nbf"])
	}
	if c := claims(iss.SignWith(nil, oidcfake.Without("sub", "exp"), oidcfake.Audience("a", "b"))); c["sub"] != nil || c["exp"] != nil || len(c["aud"].([]any)) != 2 {
		t.Fatalf("Without/Audience: %v", c)
	}
	if _, err := oidcfake.New("127.0.0.1:0", oidcfake.Options{Algorithm: jose.HS256}); err == nil {
		t.Fatal("HS256 issuer accepted")
	}
}
