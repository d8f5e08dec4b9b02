package azurefake

import (
	"context"
	"errors"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// Audience is the token audience the fake's cloud configuration declares for Resource Manager.
const Audience = "https://management.fake.jitbot.test"

// StaticCredential is an azcore.TokenCredential returning a fixed token (any value: the fake only checks that
// a Bearer token is present, and never echoes it).
type StaticCredential struct {
	Token string
	// Err, if set, is returned instead of a token.
	Err error
}

// GetToken implements azcore.TokenCredential.
func (c *StaticCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	if err := ctx.Err(); err != nil {
		return azcore.AccessToken{}, err
	}
	if c.Err != nil {
		return azcore.AccessToken{}, c.Err
	}
	if c.Token == "" {
		return azcore.AccessToken{}, errors.New("azurefake: StaticCredential without a token")
	}
	return azcore.AccessToken{Token: c.Token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// ClientOptions returns SDK options that send every ARM call to the fake over its TLS transport: a custom cloud
// whose Resource Manager endpoint is the fake's URL, and retries left to the caller (not set here).
func (s *Server) ClientOptions() *arm.ClientOptions {
	return &arm.ClientOptions{
		ClientOptions: policy.ClientOptions{
			Cloud: cloud.Configuration{
				ActiveDirectoryAuthorityHost: s.URL + "/",
				Services: map[cloud.ServiceName]cloud.ServiceConfiguration{
					cloud.ResourceManager: {Endpoint: s.URL, Audience: Audience},
				},
			},
			Transport: s.Client(),
		},
	}
}
