// Package providers is the list of jitbot's adapters. Linking it registers their provider types with the
// policy package (policy.Register), so that Parse and Load read their settings; internal/app builds and
// checks providers from the same list. Adding an adapter is its package (with a descriptor.go declaring a
// providerkit.Descriptor) and one line in All.
package providers

import (
	awsiam "github.com/jitbot/jitbot/grants/aws/iam"
	"github.com/jitbot/jitbot/grants/aws/identitycenter"
	"github.com/jitbot/jitbot/grants/azure"
	"github.com/jitbot/jitbot/grants/gcp"
	"github.com/jitbot/jitbot/grants/kube"
	"github.com/jitbot/jitbot/grants/providerkit"
	"github.com/jitbot/jitbot/grants/webhook"
	"github.com/jitbot/jitbot/policy"
)

// All are the adapters of this build, one line each.
var All = []providerkit.Descriptor{
	webhook.Descriptor,
	identitycenter.Descriptor,
	awsiam.Descriptor,
	gcp.Descriptor,
	azure.Descriptor,
	kube.Descriptor,
}

func init() {
	for _, d := range All {
		policy.Register(d.Policy)
	}
}

// Lookup returns the adapter of a provider type.
func Lookup(typ string) (providerkit.Descriptor, bool) {
	for _, d := range All {
		if d.Type() == typ {
			return d, true
		}
	}
	return providerkit.Descriptor{}, false
}
