package playground

import (
	"encoding/json"
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"
)

// Renderer turns Block Kit and Slack mrkdwn into HTML, the way Slack's client shows them (the common blocks
// and formatting; see the package tests). Every piece of text is HTML-escaped; only http(s) and mailto links
// become links.
type Renderer struct {
	// UserName names a user id in mentions ("" when unknown: the id is shown).
	UserName func(id string) string
	// ChannelName names a channel id in channel links.
	ChannelName func(id string) string
	// Me is the user the page acts as: mentions of them are highlighted.
	Me string
}

// Target says where the interactive elements of rendered blocks live, so the page can send a click to the
// emulator. It becomes data attributes on the container element.
type Target struct {
	Channel string // a message: channel id and ts
	TS      string
	ViewID  string // a view (modal or App Home)
}

func (t Target) attrs() string {
	if t.ViewID != "" {
		return fmt.Sprintf(` data-view="%s"`, attr(t.ViewID))
	}
	return fmt.Sprintf(` data-channel="%s" data-ts="%s"`, attr(t.Channel), attr(t.TS))
}

func attr(s string) string { return html.EscapeString(s) }

var emoji = map[string]string{
	"key": "🔑", "hourglass_flowing_sand": "⏳", "hourglass": "⌛", "no_entry": "⛔", "wastebasket": "🗑️",
	"zzz": "💤", "white_check_mark": "✅", "gear": "⚙️", "unlock": "🔓", "lock": "🔒", "warning": "⚠️",
	"rotating_light": "🚨", "x": "❌", "raised_hand": "✋", "alarm_clock": "⏰", "bell": "🔔",
	"information_source": "ℹ️", "tada": "🎉", "clock1": "🕐", "stopwatch": "⏱️", "heavy_check_mark": "✔️",
}

var (
	emojiRe   = regexp.MustCompile(`:([a-z0-9_+\-]+):`)
	controlRe = regexp.MustCompile(`<([^<>\n]+)>`)
	boldRe    = regexp.MustCompile(`(^|[^\p{L}\p{N}*])\*([^*\n]+?)\*`)
	italicRe  = regexp.MustCompile(`(^|[^\p{L}\p{N}_])_([^_\n]+?)_`)
	strikeRe  = regexp.MustCompile(`(^|[^\p{L}\p{N}~])~([^~\n]+?)~`)
	tokenRe   = regexp.MustCompile("\x00(\\d+)\x00")
)

// Emoji replaces the :shortcodes: jitbot uses with their characters; unknown ones stay as typed.
func Emoji(s string) string {
	return emojiRe.ReplaceAllStringFunc(s, func(m string) string {
		if e, ok := emoji[m[1:len(m)-1]]; ok {
			return e
		}
		return m
	})
}

// unescape undoes Slack's three escapes (&amp; &lt; &gt;), which mark literal characters in message text.
func unescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

// Plain renders a plain_text object's text.
func (r *Renderer) Plain(s string) string { return Emoji(html.EscapeString(s)) }

// Mrkdwn renders Slack mrkdwn: ```pre```, `code`, *bold*, _italic_, ~strike~, > quotes, <@U…> mentions,
// <#C…> channels, <!date^…|fallback>, <!here>, <url|label> links, :emoji: and line breaks.
func (r *Renderer) Mrkdwn(s string) string {
	var out strings.Builder
	parts := strings.Split(s, "```")
	for i, p := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			out.WriteString(`<pre class="bk-pre">` + html.EscapeString(unescape(strings.Trim(p, "\n"))) + `</pre>`)
			continue
		}
		if i%2 == 1 {
			p = "```" + p
		}
		out.WriteString(r.lines(p))
	}
	return out.String()
}

// lines renders quotes ("> " at a line start) and line breaks around inline text.
func (r *Renderer) lines(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if q, ok := strings.CutPrefix(line, "&gt; "); ok {
			out = append(out, `<span class="bk-quote">`+r.inline(q)+`</span>`)
			continue
		}
		if q, ok := strings.CutPrefix(line, "> "); ok {
			out = append(out, `<span class="bk-quote">`+r.inline(q)+`</span>`)
			continue
		}
		out = append(out, r.inline(line))
	}
	return strings.Join(out, "<br>")
}

// inline renders `code` spans and formats the text between them.
func (r *Renderer) inline(s string) string {
	var out strings.Builder
	segs := strings.Split(s, "`")
	for i, seg := range segs {
		if i%2 == 1 && i < len(segs)-1 && seg != "" {
			out.WriteString("<code>" + html.EscapeString(unescape(seg)) + "</code>")
			continue
		}
		if i%2 == 1 {
			seg = "`" + seg
		}
		out.WriteString(r.formatted(seg))
	}
	return out.String()
}

func (r *Renderer) formatted(s string) string {
	var tokens []string
	s = controlRe.ReplaceAllStringFunc(s, func(m string) string {
		tokens = append(tokens, r.control(m[1:len(m)-1]))
		return "\x00" + strconv.Itoa(len(tokens)-1) + "\x00"
	})
	s = html.EscapeString(unescape(s))
	s = boldRe.ReplaceAllString(s, "$1<b>$2</b>")
	s = italicRe.ReplaceAllString(s, "$1<i>$2</i>")
	s = strikeRe.ReplaceAllString(s, "$1<s>$2</s>")
	s = Emoji(s)
	return tokenRe.ReplaceAllStringFunc(s, func(m string) string {
		i, _ := strconv.Atoi(m[1 : len(m)-1])
		return tokens[i]
	})
}

// control renders one <…> sequence (https://api.slack.com/reference/surfaces/formatting).
func (r *Renderer) control(c string) string {
	body, label, hasLabel := strings.Cut(c, "|")
	label = unescape(label)
	switch {
	case strings.HasPrefix(body, "@"):
		id := body[1:]
		name := label
		if !hasLabel && r.UserName != nil {
			name = r.UserName(id)
		}
		if name == "" {
			name = id
		}
		cls := "bk-mention"
		if id == r.Me {
			cls += " bk-me"
		}
		return fmt.Sprintf(`<span class="%s" data-user-id="%s">@%s</span>`, cls, attr(id), html.EscapeString(name))
	case strings.HasPrefix(body, "#"):
		id := body[1:]
		name := label
		if !hasLabel && r.ChannelName != nil {
			name = r.ChannelName(id)
		}
		if name == "" {
			name = id
		}
		return fmt.Sprintf(`<a class="bk-channel" href="#" data-goto="%s">#%s</a>`, attr(id), html.EscapeString(name))
	case strings.HasPrefix(body, "!date^"):
		// <!date^UNIX^FORMAT[^LINK]|FALLBACK>: the fallback is what a client that cannot format shows.
		f := strings.Split(body, "^")
		ts := ""
		if len(f) > 1 {
			ts = f[1]
		}
		return fmt.Sprintf(`<time class="bk-date" data-unix="%s">%s</time>`, attr(ts), html.EscapeString(label))
	case strings.HasPrefix(body, "!subteam^"):
		name := label
		if name == "" {
			name = "@" + strings.TrimPrefix(body, "!subteam^")
		}
		return `<span class="bk-mention">` + html.EscapeString(name) + `</span>`
	case strings.HasPrefix(body, "!"):
		name := label
		if name == "" {
			name = "@" + body[1:]
		}
		return `<span class="bk-mention">` + html.EscapeString(name) + `</span>`
	}
	link := unescape(body)
	text := link
	if hasLabel {
		text = label
	}
	low := strings.ToLower(link)
	if strings.HasPrefix(low, "http://") || strings.HasPrefix(low, "https://") || strings.HasPrefix(low, "mailto:") {
		return fmt.Sprintf(`<a href="%s" target="_blank" rel="noopener noreferrer">%s</a>`, attr(link), html.EscapeString(text))
	}
	return html.EscapeString("<" + unescape(c) + ">")
}

// TextObject renders a Block Kit text object.
func (r *Renderer) TextObject(t map[string]any) string {
	if t == nil {
		return ""
	}
	s, _ := t["text"].(string)
	if t["type"] == "mrkdwn" {
		return r.Mrkdwn(s)
	}
	return r.Plain(s)
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func arr(v any) []any {
	a, _ := v.([]any)
	return a
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// Blocks renders a blocks array (JSON). errors maps input block ids to the field errors of a view
// submission.
func (r *Renderer) Blocks(raw json.RawMessage, errors map[string]string) string {
	var blocks []any
	if len(raw) == 0 || json.Unmarshal(raw, &blocks) != nil {
		return ""
	}
	var b strings.Builder
	for _, x := range blocks {
		r.block(&b, obj(x), errors)
	}
	return b.String()
}

func (r *Renderer) block(b *strings.Builder, bl map[string]any, errors map[string]string) {
	bid := str(bl["block_id"])
	switch t := str(bl["type"]); t {
	case "header":
		b.WriteString(`<div class="bk-header">` + r.TextObject(obj(bl["text"])) + `</div>`)
	case "section":
		b.WriteString(`<div class="bk-section" data-block-id="` + attr(bid) + `"><div class="bk-section-main">`)
		if txt := obj(bl["text"]); txt != nil {
			b.WriteString(`<div class="bk-text">` + r.TextObject(txt) + `</div>`)
		}
		if fields := arr(bl["fields"]); len(fields) > 0 {
			b.WriteString(`<div class="bk-fields">`)
			for _, f := range fields {
				b.WriteString(`<div class="bk-field">` + r.TextObject(obj(f)) + `</div>`)
			}
			b.WriteString(`</div>`)
		}
		b.WriteString(`</div>`)
		if acc := obj(bl["accessory"]); acc != nil {
			b.WriteString(`<div class="bk-accessory">` + r.element(acc, bid) + `</div>`)
		}
		b.WriteString(`</div>`)
	case "context":
		b.WriteString(`<div class="bk-context">`)
		for _, e := range arr(bl["elements"]) {
			em := obj(e)
			if str(em["type"]) == "image" {
				b.WriteString(`<span class="bk-img-alt">[` + html.EscapeString(str(em["alt_text"])) + `]</span>`)
				continue
			}
			b.WriteString(`<span class="bk-context-el">` + r.TextObject(em) + `</span>`)
		}
		b.WriteString(`</div>`)
	case "divider":
		b.WriteString(`<hr class="bk-divider">`)
	case "actions":
		b.WriteString(`<div class="bk-actions" data-block-id="` + attr(bid) + `">`)
		for _, e := range arr(bl["elements"]) {
			b.WriteString(r.element(obj(e), bid))
		}
		b.WriteString(`</div>`)
	case "input":
		r.input(b, bl, errors[bid])
	case "image":
		title := ""
		if tt := obj(bl["title"]); tt != nil {
			title = r.TextObject(tt) + " "
		}
		b.WriteString(`<div class="bk-image">` + title + `<span class="bk-img-alt">[image: ` + html.EscapeString(str(bl["alt_text"])) + `]</span></div>`)
	case "markdown":
		b.WriteString(`<div class="bk-text">` + r.Mrkdwn(str(bl["text"])) + `</div>`)
	case "rich_text":
		b.WriteString(`<div class="bk-text">` + html.EscapeString(richText(bl)) + `</div>`)
	default:
		b.WriteString(`<div class="bk-unknown">[` + html.EscapeString(t) + ` block]</div>`)
	}
}

// richText flattens a rich_text block to its text.
func richText(v any) string {
	switch x := v.(type) {
	case map[string]any:
		if s, ok := x["text"].(string); ok {
			return s
		}
		return richText(x["elements"])
	case []any:
		var sb strings.Builder
		for _, e := range x {
			sb.WriteString(richText(e))
		}
		return sb.String()
	}
	return ""
}

// element renders an interactive element of a section accessory or an actions block.
func (r *Renderer) element(e map[string]any, blockID string) string {
	aid := str(e["action_id"])
	common := fmt.Sprintf(` data-action-id="%s" data-block-id="%s"`, attr(aid), attr(blockID))
	switch str(e["type"]) {
	case "button":
		text := r.TextObject(obj(e["text"]))
		cls := "bk-button"
		if s := str(e["style"]); s == "primary" || s == "danger" {
			cls += " bk-" + s
		}
		if u := str(e["url"]); u != "" {
			return fmt.Sprintf(`<a class="%s" href="%s" target="_blank" rel="noopener noreferrer">%s</a>`, cls, attr(u), text)
		}
		conf := ""
		if c := obj(e["confirm"]); c != nil {
			cj, _ := json.Marshal(map[string]string{
				"title":   r.TextObject(obj(c["title"])),
				"text":    r.TextObject(obj(c["text"])),
				"confirm": r.TextObject(obj(c["confirm"])),
				"deny":    r.TextObject(obj(c["deny"])),
				"style":   str(c["style"]),
			})
			conf = fmt.Sprintf(` data-confirm="%s"`, attr(string(cj)))
		}
		return fmt.Sprintf(`<button type="button" class="%s" data-kind="button"%s data-value="%s"%s>%s</button>`, cls, common, attr(str(e["value"])), conf, text)
	case "static_select", "overflow", "radio_buttons":
		var sb strings.Builder
		sb.WriteString(`<select class="bk-select" data-kind="select"` + common + `>`)
		ph := "Select…"
		if p := obj(e["placeholder"]); p != nil {
			ph = str(p["text"])
		}
		sb.WriteString(`<option value="">` + r.Plain(ph) + `</option>`)
		for _, o := range options(e) {
			sb.WriteString(`<option value="` + attr(str(o["value"])) + `">` + r.Plain(str(obj(o["text"])["text"])) + `</option>`)
		}
		sb.WriteString(`</select>`)
		return sb.String()
	}
	return `<span class="bk-unknown">[` + html.EscapeString(str(e["type"])) + `]</span>`
}

func options(e map[string]any) []map[string]any {
	var out []map[string]any
	for _, o := range arr(e["options"]) {
		out = append(out, obj(o))
	}
	for _, g := range arr(e["option_groups"]) {
		for _, o := range arr(obj(g)["options"]) {
			out = append(out, obj(o))
		}
	}
	return out
}

// input renders an input block of a modal: label, element, hint and the field error.
func (r *Renderer) input(b *strings.Builder, bl map[string]any, fieldErr string) {
	bid := str(bl["block_id"])
	el := obj(bl["element"])
	aid := str(el["action_id"])
	optional := bl["optional"] == true
	cls := "bk-input"
	if fieldErr != "" {
		cls += " bk-has-error"
	}
	fmt.Fprintf(b, `<div class="%s" data-block-id="%s">`, cls, attr(bid))
	label := r.TextObject(obj(bl["label"]))
	if optional {
		label += ` <span class="bk-optional">(optional)</span>`
	}
	fmt.Fprintf(b, `<label class="bk-label" for="in-%s">%s</label>`, attr(bid), label)
	ph := ""
	if p := obj(el["placeholder"]); p != nil {
		ph = str(p["text"])
	}
	common := fmt.Sprintf(` id="in-%s" name="%s" data-input="1" data-block-id="%s" data-action-id="%s" placeholder="%s"`, attr(bid), attr(bid), attr(bid), attr(aid), attr(ph))
	if !optional {
		common += ` data-required="1"`
	}
	switch t := str(el["type"]); t {
	case "plain_text_input":
		maxLen := ""
		if n, ok := el["max_length"].(float64); ok && n > 0 {
			maxLen = fmt.Sprintf(` maxlength="%d"`, int(n))
		}
		if el["multiline"] == true {
			fmt.Fprintf(b, `<textarea class="bk-textarea" rows="3"%s%s>%s</textarea>`, common, maxLen, html.EscapeString(str(el["initial_value"])))
		} else {
			fmt.Fprintf(b, `<input class="bk-text-input" type="text"%s%s value="%s">`, common, maxLen, attr(str(el["initial_value"])))
		}
	case "email_text_input", "url_text_input", "number_input":
		typ := map[string]string{"email_text_input": "email", "url_text_input": "url", "number_input": "number"}[t]
		fmt.Fprintf(b, `<input class="bk-text-input" type="%s"%s value="%s">`, typ, common, attr(str(el["initial_value"])))
	case "static_select", "radio_buttons":
		initial := str(obj(el["initial_option"])["value"])
		fmt.Fprintf(b, `<select class="bk-select"%s>`, common)
		if ph == "" {
			ph = "Select an option"
		}
		b.WriteString(`<option value="">` + r.Plain(ph) + `</option>`)
		for _, o := range options(el) {
			sel := ""
			if v := str(o["value"]); v == initial && v != "" {
				sel = " selected"
			}
			desc := ""
			if d := obj(o["description"]); d != nil {
				desc = " — " + str(d["text"])
			}
			fmt.Fprintf(b, `<option value="%s"%s>%s</option>`, attr(str(o["value"])), sel, r.Plain(str(obj(o["text"])["text"])+desc))
		}
		b.WriteString(`</select>`)
	case "datepicker":
		fmt.Fprintf(b, `<input class="bk-text-input" type="date"%s value="%s">`, common, attr(str(el["initial_date"])))
	default:
		fmt.Fprintf(b, `<div class="bk-unknown">[%s input is not supported by the playground]</div>`, html.EscapeString(t))
	}
	if h := obj(bl["hint"]); h != nil {
		b.WriteString(`<div class="bk-hint">` + r.TextObject(h) + `</div>`)
	}
	if fieldErr != "" {
		b.WriteString(`<div class="bk-error" role="alert">` + html.EscapeString(fieldErr) + `</div>`)
	}
	b.WriteString(`</div>`)
}

var tagRe = regexp.MustCompile(`<[^>]*>`)

// TextContent is the text a person reads in rendered HTML (tags removed, entities decoded, line breaks and
// block ends as newlines): what the tests look at.
func TextContent(h string) string {
	h = strings.NewReplacer("<br>", "\n", "</div>", "\n", "</option>", "\n", "</button>", "\n").Replace(h)
	h = html.UnescapeString(tagRe.ReplaceAllString(h, ""))
	var lines []string
	for _, l := range strings.Split(h, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}
