// Package slackfake is a local, in-process emulator of the parts of Slack
// that jitbot talks to. It is the referee jitbot's tests run against, so it
// is written from Slack's public documentation rather than from what any
// bot happens to send.
//
// One Server plays both sides of Slack:
//
//   - the Web API (https://slack.com/api/METHOD) that the bot calls with its
//     bot token: auth.test, chat.*, conversations.open, users.*,
//     usergroups.*, views.* and apps.connections.open. Every call is
//     recorded (Calls, WaitForCall), checked for authentication, argument
//     errors and Block Kit limits, and answered with Slack's documented
//     error codes;
//   - the platform that calls the bot: slash commands, button clicks, view
//     submissions and Events API callbacks, sent either as signed HTTP
//     requests to the bot's request URLs (ModeHTTP) or as envelopes over a
//     Socket Mode WebSocket (ModeSocket). The bot's answer and how long it
//     took are recorded in a Response.
//
// Typical use:
//
//	srv := slackfake.New(slackfake.Options{Users: []slackfake.User{{ID: "U1", Name: "alice"}}})
//	defer srv.Close()
//	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
//	// ... start the bot with api, then:
//	srv.SetRequestURLs(bot.URL+"/slack/commands", bot.URL+"/slack/interactions", bot.URL+"/slack/events")
//	resp, err := srv.SlashCommand(ctx, "U1", "C1", "/jit", "request admin 1h")
//	msg, err := srv.WaitForMessage(ctx, "C1", func(m slackfake.Message) bool { return strings.Contains(m.Text, "admin") })
//
// The behaviours, the documentation each one follows and the known gaps are
// listed in docs/slack-emulator.md.
package slackfake
