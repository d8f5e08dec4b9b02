package slackfake

import (
	"fmt"
	"unicode/utf8"
)

// Block Kit limits, from Slack's reference pages:
//
//	Blocks:              https://api.slack.com/reference/block-kit/blocks
//	                     ("up to 50 blocks in each message, and 100 blocks in modals or Home tabs")
//	Block elements:      https://api.slack.com/reference/block-kit/block-elements
//	Composition objects: https://api.slack.com/reference/block-kit/composition-objects
//	Views:               https://api.slack.com/reference/surfaces/views
const (
	maxBlocksMessage = 50  // blocks reference
	maxBlocksView    = 100 // blocks reference, views reference
	maxBlockID       = 255 // every block: "Maximum length for this field is 255 characters"

	maxSectionText   = 3000 // section block: text "Minimum length 1, maximum 3000"
	maxSectionFields = 10   // section block: fields "Maximum number of items is 10"
	maxFieldText     = 2000 // section block: "Maximum length for the text in each item is 2000"
	maxHeaderText    = 150  // header block: text "Maximum length for the text in this field is 150"
	maxActionsElems  = 25   // actions block: "maximum of 25 elements"
	maxContextElems  = 10   // context block: "Maximum number of items is 10"
	maxInputLabel    = 2000 // input block: label and hint
	maxImageURL      = 3000 // image block / element
	maxAltText       = 2000 // image block: alt_text
	maxMarkdownText  = 12000

	maxActionID    = 255  // elements: action_id "Maximum length is 255 characters"
	maxButtonText  = 75   // button: text
	maxButtonValue = 2000 // button: value
	maxButtonURL   = 3000 // button: url
	maxA11yLabel   = 75   // button: accessibility_label

	maxPlaceholder  = 150 // select menus, inputs: placeholder
	maxOptions      = 100 // static select: options / option_groups
	maxOptionText   = 75  // option object: text
	maxOptionValue  = 150 // option object: value
	maxOptionDesc   = 75  // option object: description
	maxGroupLabel   = 75  // option group: label
	maxOverflowOpts = 5   // overflow: 2..5 options
	maxCheckOpts    = 10  // checkboxes / radio buttons
	maxInputLength  = 3000

	maxConfirmTitle  = 100 // confirmation dialog: title
	maxConfirmText   = 300 // confirmation dialog: text
	maxConfirmButton = 30  // confirmation dialog: confirm / deny

	maxViewTitle    = 24   // modal: title, close, submit
	maxPrivateMeta  = 3000 // views: private_metadata
	maxCallbackID   = 255  // views: callback_id
	maxExternalID   = 255  // views: external_id
	maxViewBytes    = 250 * 1000
	maxModalPushers = 3 // views.push: "Currently the limit is 3"
)

type validator struct {
	errs    []string
	surface string // "message", "modal" or "home"
}

func (v *validator) addf(ptr, format string, args ...any) {
	v.errs = append(v.errs, fmt.Sprintf(format, args...)+" [json-pointer:"+ptr+"]")
}

func runeLen(s string) int { return utf8.RuneCountInString(s) }

// str checks an optional/required string field's presence, type and length.
func (v *validator) str(m map[string]any, key, ptr string, required bool, min, max int) (string, bool) {
	raw, present := m[key]
	if !present || raw == nil {
		if required {
			v.addf(ptr+"/"+key, "missing required field: %s", key)
		}
		return "", false
	}
	s, isStr := raw.(string)
	if !isStr {
		v.addf(ptr+"/"+key, "must provide a string")
		return "", false
	}
	if n := runeLen(s); n < min {
		v.addf(ptr+"/"+key, "must be more than %d characters", min-1)
	} else if max > 0 && n > max {
		v.addf(ptr+"/"+key, "must be less than %d characters", max+1)
	}
	return s, true
}

func (v *validator) obj(m map[string]any, key, ptr string, required bool) (map[string]any, bool) {
	raw, present := m[key]
	if !present || raw == nil {
		if required {
			v.addf(ptr+"/"+key, "missing required field: %s", key)
		}
		return nil, false
	}
	o, isObj := raw.(map[string]any)
	if !isObj {
		v.addf(ptr+"/"+key, "must provide an object")
		return nil, false
	}
	return o, true
}

func (v *validator) arr(m map[string]any, key, ptr string, required bool, min, max int) ([]any, bool) {
	raw, present := m[key]
	if !present || raw == nil {
		if required {
			v.addf(ptr+"/"+key, "missing required field: %s", key)
		}
		return nil, false
	}
	a, isArr := raw.([]any)
	if !isArr {
		v.addf(ptr+"/"+key, "must provide an array")
		return nil, false
	}
	if len(a) < min {
		v.addf(ptr+"/"+key, "must provide at least %d items", min)
	}
	if max > 0 && len(a) > max {
		v.addf(ptr+"/"+key, "must provide no more than %d items", max)
	}
	return a, true
}

// text validates a text composition object. plainOnly restricts the type to
// plain_text ("Can only be of type: plain_text").
// https://api.slack.com/reference/block-kit/composition-objects#text
func (v *validator) text(m map[string]any, key, ptr string, required, plainOnly bool, max int) {
	o, present := v.obj(m, key, ptr, required)
	if !present {
		return
	}
	p := ptr + "/" + key
	t, _ := v.str(o, "type", p, true, 1, 0)
	switch t {
	case "plain_text":
	case "mrkdwn":
		if plainOnly {
			v.addf(p+"/type", "must be plain_text")
		}
		if _, has := o["emoji"]; has {
			v.addf(p+"/emoji", "emoji is only allowed for plain_text")
		}
	case "":
	default:
		v.addf(p+"/type", "must be one of: plain_text, mrkdwn")
	}
	v.str(o, "text", p, true, 1, max)
}

// confirm validates a confirmation dialog object.
// https://api.slack.com/reference/block-kit/composition-objects#confirm
func (v *validator) confirm(m map[string]any, ptr string) {
	o, present := v.obj(m, "confirm", ptr, false)
	if !present {
		return
	}
	p := ptr + "/confirm"
	v.text(o, "title", p, true, true, maxConfirmTitle)
	v.text(o, "text", p, true, false, maxConfirmText)
	v.text(o, "confirm", p, true, true, maxConfirmButton)
	v.text(o, "deny", p, true, true, maxConfirmButton)
	if st, has := v.str(o, "style", p, false, 0, 0); has && st != "primary" && st != "danger" {
		v.addf(p+"/style", "must be one of: primary, danger")
	}
}

// option validates an option object; plainOnly for select menus and
// overflow menus. https://api.slack.com/reference/block-kit/composition-objects#option
func (v *validator) option(o any, ptr string, plainOnly bool) (string, bool) {
	m, isObj := o.(map[string]any)
	if !isObj {
		v.addf(ptr, "must provide an object")
		return "", false
	}
	v.text(m, "text", ptr, true, plainOnly, maxOptionText)
	val, _ := v.str(m, "value", ptr, true, 1, maxOptionValue)
	v.text(m, "description", ptr, false, true, maxOptionDesc)
	return val, true
}

func (v *validator) options(m map[string]any, key, ptr string, required bool, min, max int, plainOnly bool) map[string]bool {
	values := map[string]bool{}
	opts, present := v.arr(m, key, ptr, required, min, max)
	if !present {
		return values
	}
	for i, o := range opts {
		if val, good := v.option(o, fmt.Sprintf("%s/%s/%d", ptr, key, i), plainOnly); good {
			values[val] = true
		}
	}
	return values
}

func isInteractive(t string) bool {
	switch t {
	case "button", "checkboxes", "datepicker", "datetimepicker", "timepicker", "overflow",
		"radio_buttons", "static_select", "external_select", "users_select", "conversations_select",
		"channels_select", "multi_static_select", "multi_external_select", "multi_users_select",
		"multi_conversations_select", "multi_channels_select", "plain_text_input", "email_text_input",
		"url_text_input", "number_input", "rich_text_input", "workflow_button", "file_input":
		return true
	}
	return false
}

// inputOnly elements work only in input blocks (block elements reference,
// "Works with block types: Input").
func inputOnly(t string) bool {
	switch t {
	case "plain_text_input", "email_text_input", "url_text_input", "number_input", "file_input":
		return true
	}
	return false
}

// element validates a block element. ctx is "actions", "section", "input" or "context".
// https://api.slack.com/reference/block-kit/block-elements
func (v *validator) element(e any, ptr, ctx string) (actionID string) {
	m, isObj := e.(map[string]any)
	if !isObj {
		v.addf(ptr, "must provide an object")
		return ""
	}
	t, _ := v.str(m, "type", ptr, true, 1, 0)
	if t == "image" {
		if ctx == "actions" || ctx == "input" {
			v.addf(ptr+"/type", "image elements are not allowed in %s blocks", ctx)
		}
		v.imageFields(m, ptr)
		return ""
	}
	if !isInteractive(t) {
		v.addf(ptr+"/type", "unsupported element type %q", t)
		return ""
	}
	if ctx == "context" {
		v.addf(ptr+"/type", "context blocks only take image and text elements")
	}
	if inputOnly(t) && ctx != "input" {
		v.addf(ptr+"/type", "%s is only allowed in input blocks", t)
	}
	// Surfaces per element, from the block elements reference table.
	switch {
	case (t == "email_text_input" || t == "url_text_input" || t == "number_input" || t == "file_input") && v.surface != "modal":
		v.addf(ptr+"/type", "%s is only available in modals", t)
	case t == "rich_text_input" && v.surface == "message":
		v.addf(ptr+"/type", "rich_text_input is not available in messages")
	case t == "datetimepicker" && v.surface == "home":
		v.addf(ptr+"/type", "datetimepicker is not available in Home tabs")
	}
	actionID, _ = v.str(m, "action_id", ptr, false, 1, maxActionID)
	v.confirm(m, ptr)
	switch t {
	case "button":
		v.text(m, "text", ptr, true, true, maxButtonText)
		v.str(m, "value", ptr, false, 0, maxButtonValue)
		v.str(m, "url", ptr, false, 1, maxButtonURL)
		v.str(m, "accessibility_label", ptr, false, 1, maxA11yLabel)
		if st, has := v.str(m, "style", ptr, false, 0, 0); has && st != "primary" && st != "danger" {
			v.addf(ptr+"/style", "must be one of: primary, danger")
		}
	case "static_select", "multi_static_select":
		v.text(m, "placeholder", ptr, false, true, maxPlaceholder)
		_, hasOpts := m["options"]
		_, hasGroups := m["option_groups"]
		values := map[string]bool{}
		switch {
		case hasOpts && hasGroups:
			v.addf(ptr, "options and option_groups are mutually exclusive")
		case hasOpts:
			values = v.options(m, "options", ptr, true, 1, maxOptions, true)
		case hasGroups:
			groups, _ := v.arr(m, "option_groups", ptr, true, 1, maxOptions)
			for i, g := range groups {
				gp := fmt.Sprintf("%s/option_groups/%d", ptr, i)
				gm, isObj := g.(map[string]any)
				if !isObj {
					v.addf(gp, "must provide an object")
					continue
				}
				v.text(gm, "label", gp, true, true, maxGroupLabel)
				for k := range v.options(gm, "options", gp, true, 1, maxOptions, true) {
					values[k] = true
				}
			}
		default:
			v.addf(ptr+"/options", "missing required field: options")
		}
		if io, has := v.obj(m, "initial_option", ptr, false); has {
			if !values[asString(io["value"])] {
				v.addf(ptr+"/initial_option", "must match one of the provided options")
			}
		}
	case "overflow":
		v.options(m, "options", ptr, true, 2, maxOverflowOpts, true)
	case "checkboxes", "radio_buttons":
		v.options(m, "options", ptr, true, 1, maxCheckOpts, false)
	case "plain_text_input":
		v.text(m, "placeholder", ptr, false, true, maxPlaceholder)
		minL, maxL := intField(m, "min_length"), intField(m, "max_length")
		if minL < 0 || minL > maxInputLength {
			v.addf(ptr+"/min_length", "must be between 0 and %d", maxInputLength)
		}
		if _, has := m["max_length"]; has && (maxL < 1 || maxL > maxInputLength || maxL < minL) {
			v.addf(ptr+"/max_length", "must be between 1 and %d and not less than min_length", maxInputLength)
		}
	case "users_select", "conversations_select", "channels_select", "external_select",
		"multi_users_select", "multi_conversations_select", "multi_channels_select", "multi_external_select",
		"datepicker", "timepicker", "email_text_input", "url_text_input", "number_input":
		v.text(m, "placeholder", ptr, false, true, maxPlaceholder)
	}
	return actionID
}

func intField(m map[string]any, key string) int {
	switch n := m[key].(type) {
	case float64:
		return int(n)
	case int:
		return n
	}
	return 0
}

func (v *validator) imageFields(m map[string]any, ptr string) {
	_, hasURL := m["image_url"]
	_, hasFile := m["slack_file"]
	if !hasURL && !hasFile {
		v.addf(ptr+"/image_url", "missing required field: image_url")
	}
	if hasURL {
		v.str(m, "image_url", ptr, true, 1, maxImageURL)
	}
	v.str(m, "alt_text", ptr, true, 1, maxAltText)
}

// validateBlocks checks a blocks array for the given surface ("message",
// "modal" or "home") and answers Slack-style messages, each ending with a
// json-pointer.
func validateBlocks(blocks []any, surface, ptr string) []string {
	v := &validator{surface: surface}
	max := maxBlocksMessage
	if surface != "message" {
		max = maxBlocksView
	}
	if len(blocks) > max {
		v.addf(ptr, "no more than %d items allowed", max)
	}
	blockIDs := map[string]bool{}
	for i, b := range blocks {
		p := fmt.Sprintf("%s/%d", ptr, i)
		m, isObj := b.(map[string]any)
		if !isObj {
			v.addf(p, "must provide an object")
			continue
		}
		if id, has := v.str(m, "block_id", p, false, 1, maxBlockID); has {
			if blockIDs[id] {
				v.addf(p+"/block_id", "duplicate block_id %q", id)
			}
			blockIDs[id] = true
		}
		t, _ := v.str(m, "type", p, true, 1, 0)
		switch t {
		case "section":
			_, hasText := m["text"]
			_, hasFields := m["fields"]
			if !hasText && !hasFields {
				v.addf(p, "section blocks need text or fields")
			}
			v.text(m, "text", p, false, false, maxSectionText)
			if fields, has := v.arr(m, "fields", p, false, 1, maxSectionFields); has {
				for j, f := range fields {
					v.text(map[string]any{"f": f}, "f", fmt.Sprintf("%s/fields/%d", p, j), true, false, maxFieldText)
				}
			}
			if _, has := m["accessory"]; has {
				v.element(m["accessory"], p+"/accessory", "section")
			}
		case "header":
			v.text(m, "text", p, true, true, maxHeaderText)
		case "divider":
		case "actions":
			els, _ := v.arr(m, "elements", p, true, 1, maxActionsElems)
			actionIDs := map[string]bool{}
			for j, e := range els {
				id := v.element(e, fmt.Sprintf("%s/elements/%d", p, j), "actions")
				if id != "" {
					// "Should be unique among all other action_ids in the containing block."
					if actionIDs[id] {
						v.addf(fmt.Sprintf("%s/elements/%d/action_id", p, j), "duplicate action_id %q in block", id)
					}
					actionIDs[id] = true
				}
			}
		case "context":
			els, _ := v.arr(m, "elements", p, true, 1, maxContextElems)
			for j, e := range els {
				ep := fmt.Sprintf("%s/elements/%d", p, j)
				em, isObj := e.(map[string]any)
				if !isObj {
					v.addf(ep, "must provide an object")
					continue
				}
				switch asString(em["type"]) {
				case "plain_text", "mrkdwn":
					v.text(map[string]any{"e": em}, "e", ep, true, false, maxSectionText)
				default:
					v.element(em, ep, "context")
				}
			}
		case "input":
			v.text(m, "label", p, true, true, maxInputLabel)
			v.text(m, "hint", p, false, true, maxInputLabel)
			if el, has := v.obj(m, "element", p, true); has {
				v.element(el, p+"/element", "input")
			}
		case "image":
			v.imageFields(m, p)
			v.text(m, "title", p, false, true, maxAltText)
		case "markdown":
			if surface != "message" {
				v.addf(p+"/type", "markdown blocks are only available in messages")
			}
			v.str(m, "text", p, true, 1, maxMarkdownText)
		case "rich_text":
			v.arr(m, "elements", p, true, 0, 0)
		case "video", "file", "table", "context_actions":
			// Accepted without deeper checks.
		case "":
		default:
			v.addf(p+"/type", "unsupported block type %q", t)
		}
	}
	return v.errs
}

// validateView checks a view object for views.open/push/update (modal) or
// views.publish (home). https://api.slack.com/reference/surfaces/views
func validateView(view map[string]any, wantType string) []string {
	v := &validator{}
	t, _ := v.str(view, "type", "/view", true, 1, 0)
	if t != "" && t != wantType {
		v.addf("/view/type", "must be %s", wantType)
	}
	blocks, _ := v.arr(view, "blocks", "/view", true, 0, 0)
	v.str(view, "private_metadata", "/view", false, 0, maxPrivateMeta)
	v.str(view, "callback_id", "/view", false, 0, maxCallbackID)
	v.str(view, "external_id", "/view", false, 0, maxExternalID)
	if t == "modal" {
		v.text(view, "title", "/view", true, true, maxViewTitle)
		v.text(view, "close", "/view", false, true, maxViewTitle)
		v.text(view, "submit", "/view", false, true, maxViewTitle)
		hasInput := false
		for _, b := range blocks {
			if bm, isObj := b.(map[string]any); isObj && asString(bm["type"]) == "input" {
				hasInput = true
			}
		}
		// "submit is required when an input block is within the blocks array"
		if _, hasSubmit := view["submit"]; hasInput && !hasSubmit {
			v.addf("/view/submit", "submit is required when an input block is within the blocks array")
		}
	}
	if t == "" {
		t = wantType
	}
	v.errs = append(v.errs, validateBlocks(blocks, t, "/view/blocks")...)
	return v.errs
}
