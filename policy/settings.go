package policy

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// ProviderType is how the policy reads one provider type: its name, which also names the settings block,
// and the typed settings that block decodes into. Every adapter declares one in its descriptor
// (grants/providerkit); linking grants/providers registers them all. The webhook type is built in
// (WebhookType), so that every build parses webhook providers.
type ProviderType struct {
	name     string
	fields   []settingField
	defaults func() any // a pointer to new settings, defaults applied
	check    func(settings any, c *SettingsCheck)
}

type settingField struct {
	key   string
	index int
	kind  reflect.Type
}

var (
	stringType   = reflect.TypeFor[string]()
	listType     = reflect.TypeFor[[]string]()
	durationType = reflect.TypeFor[time.Duration]()
	mapType      = reflect.TypeFor[map[string]string]()
)

// NewProviderType declares a provider type whose settings block decodes into S. The exported fields of S
// tagged `policy:"key"` are the keys of the block, in field order: string, []string (a single value is
// taken as a one-element list), time.Duration and map[string]string (a mapping of names to single values,
// such as named documents); untagged fields are not read from the policy. A value of
// the wrong shape is a problem naming the file, line and field. defaults, when not nil, gives the settings
// before the block is read. check, when not nil, validates the decoded settings and reports problems at the
// keys they are about; Provider.Settings holds the result (a *S).
func NewProviderType[S any](name string, defaults func() S, check func(s *S, c *SettingsCheck)) ProviderType {
	t := reflect.TypeFor[S]()
	if t.Kind() != reflect.Struct {
		panic(fmt.Sprintf("policy: settings of provider type %s are a %s, not a struct", name, t.Kind()))
	}
	pt := ProviderType{name: name}
	for i := range t.NumField() {
		f := t.Field(i)
		key, ok := f.Tag.Lookup("policy")
		if !ok || key == "-" {
			continue
		}
		if !f.IsExported() || (f.Type != stringType && f.Type != listType && f.Type != durationType && f.Type != mapType) {
			panic(fmt.Sprintf("policy: setting %s.%s of provider type %s must be an exported string, []string, "+
				"time.Duration or map[string]string", t.Name(), f.Name, name))
		}
		pt.fields = append(pt.fields, settingField{key: key, index: i, kind: f.Type})
	}
	pt.defaults = func() any {
		s := new(S)
		if defaults != nil {
			*s = defaults()
		}
		return s
	}
	if check != nil {
		pt.check = func(s any, c *SettingsCheck) { check(s.(*S), c) }
	}
	return pt
}

// Name is the provider type ("webhook"): the value of a provider's type and the name of its settings block.
func (t ProviderType) Name() string { return t.name }

// Keys are the keys of the settings block, in declaration order.
func (t ProviderType) Keys() []string {
	out := make([]string, len(t.fields))
	for i, f := range t.fields {
		out[i] = f.key
	}
	return out
}

// registry holds the provider types Parse and Load know: the built-in webhook type and those registered.
var registry = struct {
	sync.RWMutex
	types map[string]ProviderType
}{types: map[string]ProviderType{}}

// Register adds provider types to those Parse and Load read (grants/providers registers every adapter's
// when it is linked). A type registered again replaces the earlier one.
func Register(types ...ProviderType) {
	registry.Lock()
	defer registry.Unlock()
	for _, t := range types {
		if t.name == "" {
			panic("policy: provider type without a name")
		}
		registry.types[t.name] = t
	}
}

// registered returns the known types by name: the built-in ones, then the registered, then extra.
func registered(extra []ProviderType) map[string]ProviderType {
	registry.RLock()
	defer registry.RUnlock()
	out := make(map[string]ProviderType, len(registry.types)+len(extra)+1)
	out[WebhookType.name] = WebhookType
	for n, t := range registry.types {
		out[n] = t
	}
	for _, t := range extra {
		out[t.name] = t
	}
	return out
}

// decodeSettings reads the settings block of a provider of type t into new typed settings, then runs the
// type's check.
func (d *decoder) decodeSettings(t ProviderType, s map[string]pair, block pair, field string, p *Provider) any {
	settings := t.defaults()
	v := reflect.ValueOf(settings).Elem()
	c := &SettingsCheck{d: d, p: p, field: field, block: block, pairs: s, bad: map[string]bool{}}
	for _, f := range t.fields {
		kv, ok := s[f.key]
		if !ok || isNull(kv.v) {
			continue
		}
		fv, fieldName := v.Field(f.index), join(field, f.key)
		switch f.kind {
		case stringType:
			if _, ok := d.scalar(kv.v, fieldName); !ok {
				c.bad[f.key] = true
				continue
			}
			fv.SetString(d.str(kv, fieldName))
		case listType:
			var l []string
			if resolve(kv.v).Kind == yaml.ScalarNode { // a single value is a one-element list
				if one := d.str(kv, fieldName); one != "" {
					l = []string{one}
				}
			} else if l, ok = d.list(kv, fieldName, "a, b", nil); !ok {
				c.bad[f.key] = true
				continue
			}
			fv.Set(reflect.ValueOf(l))
		case durationType:
			dur, ok := d.duration(kv, fieldName)
			if !ok {
				c.bad[f.key] = true
				continue
			}
			fv.SetInt(int64(dur))
		case mapType:
			m, ok := d.stringMap(kv, fieldName)
			if !ok {
				c.bad[f.key] = true
				continue
			}
			fv.Set(reflect.ValueOf(m))
		}
	}
	if t.check != nil {
		t.check(settings, c)
	}
	return settings
}

// stringMap decodes a mapping of names to single values.
func (d *decoder) stringMap(p pair, field string) (map[string]string, bool) {
	ps, ok := d.mapping(p.v, field, "a mapping of names to values")
	if !ok {
		return nil, false
	}
	out := make(map[string]string, len(ps))
	for _, e := range ps {
		name := resolve(e.k).Value
		v, sok := d.scalar(e.v, join(field, name))
		if !sok {
			ok = false
			continue
		}
		out[name] = strings.TrimSpace(v)
	}
	return out, ok
}

// SettingsCheck is what a provider type's check reports to: problems at the settings they are about, with
// the policy file's name, line and field, and the environment variables the provider reads at run time.
type SettingsCheck struct {
	d     *decoder
	p     *Provider
	field string
	block pair
	pairs map[string]pair
	bad   map[string]bool // keys whose value had the wrong shape (already reported)
}

// Problem reports a problem with the setting key, at its value (at the settings block when key is not
// written, or is "": a problem with the block as a whole).
func (c *SettingsCheck) Problem(key, format string, args ...any) {
	n, field := c.block.k, c.field
	if key != "" {
		field = join(c.field, key)
		if kv, ok := c.pairs[key]; ok && !isNull(kv.v) {
			n = kv.v
		}
	}
	c.d.problem(n, field, format, args...)
}

// Required reports that key is required (why says what it is for) unless it was written, or written with
// the wrong shape (already reported). An empty value is not written: the problem is then at its key.
func (c *SettingsCheck) Required(key, why string) {
	kv, ok := c.pairs[key]
	switch {
	case c.bad[key]:
		return
	case !ok || isNull(kv.v):
		c.d.problem(c.block.k, join(c.field, key), "is required: %s", why)
	case resolve(kv.v).Kind == yaml.ScalarNode && strings.TrimSpace(resolve(kv.v).Value) == "":
		c.d.problem(kv.k, join(c.field, key), "is required: %s", why)
	}
}

// SecretEnv checks that the value of key, name, is the NAME of an environment variable (never repeating it:
// people paste the secret itself here) and records that the provider needs it at run time, to purpose
// ("sign webhook calls"), so that Warnings and MissingSecrets cover it. It reports whether the name is valid.
func (c *SettingsCheck) SecretEnv(key, name, purpose string) bool {
	kv, ok := c.pairs[key]
	if !ok || name == "" {
		return false
	}
	if !checkEnvName(c.d, kv.v, join(c.field, key), name) {
		return false
	}
	c.p.needSecret(name, kv.v, join(c.field, key), purpose)
	return true
}

// knownTypes lists the type names for messages.
func knownTypes(types map[string]ProviderType) string {
	return strings.Join(sortedKeys(types), ", ")
}

// NewSettings returns new settings of the type, with its defaults applied (a pointer to its settings struct).
func (t ProviderType) NewSettings() any { return t.defaults() }
