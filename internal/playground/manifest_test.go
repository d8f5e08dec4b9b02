package playground

import (
	"os"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// manifest is the part of Slack's app manifest (https://api.slack.com/reference/manifests) jitbot relies on.
type manifest struct {
	DisplayInformation struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
	} `yaml:"display_information"`
	Features struct {
		AppHome *struct {
			HomeTabEnabled     bool `yaml:"home_tab_enabled"`
			MessagesTabEnabled bool `yaml:"messages_tab_enabled"`
		} `yaml:"app_home"`
		BotUser *struct {
			DisplayName string `yaml:"display_name"`
		} `yaml:"bot_user"`
		SlashCommands []struct {
			Command     string `yaml:"command"`
			URL         string `yaml:"url"`
			Description string `yaml:"description"`
		} `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		EventSubscriptions *struct {
			RequestURL string   `yaml:"request_url"`
			BotEvents  []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
		Interactivity *struct {
			IsEnabled  bool   `yaml:"is_enabled"`
			RequestURL string `yaml:"request_url"`
		} `yaml:"interactivity"`
		SocketModeEnabled *bool `yaml:"socket_mode_enabled"`
	} `yaml:"settings"`
}

// TestSlackManifests parses slack/manifest.yaml (HTTP mode) and slack/manifest.socket.yaml (Socket Mode)
// and checks what Slack's manifest reference requires and what jitbot needs: a name (at most 35
// characters), a bot user with a display name, the /jit command with a description (and a request URL in
// HTTP mode only), exactly the minimum bot scopes, interactivity on, app_home_opened subscribed, the Home
// and Messages tabs, and the socket mode flag.
func TestSlackManifests(t *testing.T) {
	wantScopes := []string{"chat:write", "commands", "im:write", "usergroups:read", "users:read"}
	for file, socket := range map[string]bool{"manifest.yaml": false, "manifest.socket.yaml": true} {
		t.Run(file, func(t *testing.T) {
			raw, err := os.ReadFile("../../slack/" + file)
			if err != nil {
				t.Fatal(err)
			}
			var m manifest
			dec := yaml.NewDecoder(strings.NewReader(string(raw)))
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("not YAML: %v", err)
			}
			if n := m.DisplayInformation.Name; n == "" || len(n) > 35 {
				t.Errorf("display_information.name %q (required, at most 35 characters)", n)
			}
			if m.Features.BotUser == nil || m.Features.BotUser.DisplayName == "" {
				t.Error("features.bot_user.display_name is required for a bot")
			}
			if len(m.Features.SlashCommands) != 1 {
				t.Fatalf("slash_commands = %+v, want /jit only", m.Features.SlashCommands)
			}
			cmd := m.Features.SlashCommands[0]
			if cmd.Command != "/jit" || cmd.Description == "" {
				t.Errorf("slash command %+v: /jit with a description", cmd)
			}
			scopes := slices.Clone(m.OAuthConfig.Scopes.Bot)
			slices.Sort(scopes)
			if !slices.Equal(scopes, wantScopes) {
				t.Errorf("oauth_config.scopes.bot = %v, want exactly %v", scopes, wantScopes)
			}
			if m.Settings.Interactivity == nil || !m.Settings.Interactivity.IsEnabled {
				t.Error("settings.interactivity.is_enabled must be true (buttons and modals)")
			}
			if m.Settings.EventSubscriptions == nil || !slices.Contains(m.Settings.EventSubscriptions.BotEvents, "app_home_opened") {
				t.Error("settings.event_subscriptions.bot_events must include app_home_opened")
			}
			if h := m.Features.AppHome; h == nil || !h.HomeTabEnabled || !h.MessagesTabEnabled {
				t.Error("features.app_home: home_tab_enabled and messages_tab_enabled must be true")
			}
			if m.Settings.SocketModeEnabled == nil || *m.Settings.SocketModeEnabled != socket {
				t.Errorf("settings.socket_mode_enabled must be %v", socket)
			}
			urls := map[string]string{"/slack/commands": cmd.URL}
			if m.Settings.Interactivity != nil {
				urls["/slack/interactions"] = m.Settings.Interactivity.RequestURL
			}
			if m.Settings.EventSubscriptions != nil {
				urls["/slack/events"] = m.Settings.EventSubscriptions.RequestURL
			}
			for path, u := range urls {
				switch {
				case socket && u != "":
					t.Errorf("Socket Mode manifest has a request URL %q", u)
				case !socket && (!strings.HasPrefix(u, "https://") || !strings.HasSuffix(u, path)):
					t.Errorf("request URL %q: want https://…%s (jitbot's HTTP handler)", u, path)
				}
			}
		})
	}
}
