package playground

import (
	"encoding/json"
	"strings"
	"testing"
)

func testRenderer() *Renderer {
	return &Renderer{
		Me:          "U01ALICE",
		UserName:    func(id string) string { return map[string]string{"U01ALICE": "Alice", "U03CAROL": "Carol"}[id] },
		ChannelName: func(id string) string { return map[string]string{"C0123APPROVALS": "approvals"}[id] },
	}
}

func TestMrkdwn(t *testing.T) {
	r := testRenderer()
	cases := map[string]string{
		"*Requester*\n<@U03CAROL>":                   `<b>Requester</b><br><span class="bk-mention" data-user-id="U03CAROL">@Carol</span>`,
		"by <@U01ALICE>":                             `by <span class="bk-mention bk-me" data-user-id="U01ALICE">@Alice</span>`,
		"<@U09NOBODY|nobody>":                        `@nobody`,
		"role `prod-db-admin`":                       `role <code>prod-db-admin</code>`,
		"until <!date^1795636751^{time}|19:59 UTC>.": `until <time class="bk-date" data-unix="1795636751">19:59 UTC</time>.`,
		"in <#C0123APPROVALS>":                       `in <a class="bk-channel" href="#" data-goto="C0123APPROVALS">#approvals</a>`,
		"_slow_ and ~old~":                           `<i>slow</i> and <s>old</s>`,
		":key: Access 19:34:18 :nope:":               `🔑 Access 19:34:18 :nope:`,
		"<https://example.com/x?a=1&amp;b=2|docs>":   `<a href="https://example.com/x?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">docs</a>`,
		"<javascript:alert(1)|x>":                    `&lt;javascript:alert(1)|x&gt;`,
		"a &lt;script&gt; &amp; b":                   `a &lt;script&gt; &amp; b`,
		"```<@U01ALICE> *x*```":                      `<pre class="bk-pre">&lt;@U01ALICE&gt; *x*</pre>`,
		"`*not bold*`":                               `<code>*not bold*</code>`,
		"<!here> now":                                `<span class="bk-mention">@here</span> now`,
		"snake_case_name":                            `snake_case_name`,
	}
	for in, want := range cases {
		if got := r.Mrkdwn(in); !strings.Contains(got, want) {
			t.Errorf("Mrkdwn(%q)\n got  %s\n want %s", in, got, want)
		}
	}
	// Text written by people (a reason) is escaped by jitbot; nothing in it may become markup.
	if got := r.Mrkdwn(`*Reason*` + "\n" + `"><img src=x onerror=alert(1)>`); strings.Contains(got, "<img") {
		t.Errorf("unescaped HTML: %s", got)
	}
}

func TestBlocks(t *testing.T) {
	r := testRenderer()
	blocks := `[
	 {"type":"header","text":{"type":"plain_text","text":":key: Access request r-1 <b>"}},
	 {"type":"section","block_id":"s1","fields":[{"type":"mrkdwn","text":"*Requester*\n<@U01ALICE>"},{"type":"mrkdwn","text":"*Approvals*\n1 of 2"}]},
	 {"type":"section","text":{"type":"mrkdwn","text":"*Reason*\nINC-1"},"accessory":{"type":"button","action_id":"acc","text":{"type":"plain_text","text":"More"}}},
	 {"type":"context","elements":[{"type":"mrkdwn","text":":hourglass_flowing_sand: Waiting (1 of 2)"},{"type":"image","image_url":"https://x/y.png","alt_text":"clock"}]},
	 {"type":"divider"},
	 {"type":"actions","block_id":"decide:r-1","elements":[
	   {"type":"button","action_id":"jit_approve","value":"r-1","style":"primary","text":{"type":"plain_text","text":"Approve"},
	    "confirm":{"title":{"type":"plain_text","text":"Approve this request?"},"text":{"type":"mrkdwn","text":"<@U01ALICE> gets it"},"confirm":{"type":"plain_text","text":"Approve"},"deny":{"type":"plain_text","text":"Cancel"}}},
	   {"type":"button","action_id":"jit_deny","value":"r-1","style":"danger","text":{"type":"plain_text","text":"Deny…"}},
	   {"type":"button","action_id":"docs","url":"https://example.com","text":{"type":"plain_text","text":"Docs"}}]},
	 {"type":"video","title":{"type":"plain_text","text":"v"}}
	]`
	h := r.Blocks(json.RawMessage(blocks), nil)
	for _, want := range []string{
		`<div class="bk-header">🔑 Access request r-1 &lt;b&gt;</div>`,
		`<div class="bk-fields"><div class="bk-field"><b>Requester</b><br><span class="bk-mention bk-me" data-user-id="U01ALICE">@Alice</span></div>`,
		`<div class="bk-accessory"><button type="button" class="bk-button" data-kind="button" data-action-id="acc" data-block-id=""`,
		`<span class="bk-context-el">⏳ Waiting (1 of 2)</span><span class="bk-img-alt">[clock]</span>`,
		`<hr class="bk-divider">`,
		`class="bk-button bk-primary" data-kind="button" data-action-id="jit_approve" data-block-id="decide:r-1" data-value="r-1" data-confirm="{&#34;confirm&#34;:&#34;Approve&#34;`,
		`class="bk-button bk-danger" data-kind="button" data-action-id="jit_deny"`,
		`<a class="bk-button" href="https://example.com" target="_blank"`,
		`[video block]`,
	} {
		if !strings.Contains(h, want) {
			t.Errorf("missing %s\nin %s", want, h)
		}
	}
	if got := TextContent(h); !strings.Contains(got, "Requester\n@Alice\nApprovals\n1 of 2") || !strings.Contains(got, "Approve\nDeny…") {
		t.Errorf("TextContent:\n%s", got)
	}
	if got := buttons(json.RawMessage(blocks)); len(got) != 4 || got[1].ActionID != "jit_approve" || !got[1].Confirm || got[1].BlockID != "decide:r-1" {
		t.Errorf("buttons %+v", got)
	}
}

func TestModalInputs(t *testing.T) {
	r := testRenderer()
	blocks := `[
	 {"type":"input","block_id":"role","label":{"type":"plain_text","text":"Role"},"element":{"type":"static_select","action_id":"value",
	   "placeholder":{"type":"plain_text","text":"Choose a role"},
	   "options":[{"text":{"type":"plain_text","text":"prod-db-admin"},"value":"prod-db-admin","description":{"type":"plain_text","text":"up to 4h"}}]}},
	 {"type":"input","block_id":"duration","optional":true,"label":{"type":"plain_text","text":"Duration"},"hint":{"type":"plain_text","text":"Leave empty"},
	   "element":{"type":"plain_text_input","action_id":"value"}},
	 {"type":"input","block_id":"reason","label":{"type":"plain_text","text":"Reason"},"element":{"type":"plain_text_input","action_id":"value","multiline":true,"max_length":1000}}
	]`
	h := r.Blocks(json.RawMessage(blocks), map[string]string{"duration": "bad <duration>"})
	for _, want := range []string{
		`<select class="bk-select" id="in-role" name="role" data-input="1" data-block-id="role" data-action-id="value" placeholder="Choose a role" data-required="1">`,
		`<option value="prod-db-admin">prod-db-admin — up to 4h</option>`,
		`<div class="bk-input bk-has-error" data-block-id="duration">`,
		`Duration <span class="bk-optional">(optional)</span>`,
		`<div class="bk-hint">Leave empty</div>`,
		`<div class="bk-error" role="alert">bad &lt;duration&gt;</div>`,
		`<textarea class="bk-textarea" rows="3" id="in-reason"`,
		`maxlength="1000"`,
	} {
		if !strings.Contains(h, want) {
			t.Errorf("missing %s\nin %s", want, h)
		}
	}
	if strings.Contains(h[strings.Index(h, `id="in-duration"`):strings.Index(h, `Leave empty`)], "data-required") {
		t.Error("an optional input is marked required")
	}
}
