package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// object is a JSON object that keeps its keys in insertion order, so that the generated schema follows the order of
// values.yaml and of each `# @schema` annotation instead of Go's sorted map order.
type object struct {
	keys []string
	vals map[string]any
}

func newObject() *object {
	return &object{vals: map[string]any{}}
}

// set adds k at the end, or replaces its value in place when k is already there.
func (o *object) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

func (o *object) get(k string) (any, bool) {
	v, ok := o.vals[k]
	return v, ok
}

func (o *object) has(k string) bool {
	_, ok := o.vals[k]
	return ok
}

func (o *object) del(k string) {
	if !o.has(k) {
		return
	}
	delete(o.vals, k)
	for i, key := range o.keys {
		if key == k {
			o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
			return
		}
	}
}

// clone copies the key list and the top-level values; nested values are shared, which is safe because the generator
// never mutates a value after putting it in a schema.
func (o *object) clone() *object {
	c := &object{keys: append([]string(nil), o.keys...), vals: make(map[string]any, len(o.vals))}
	for k, v := range o.vals {
		c.vals[k] = v
	}
	return c
}

// decodeJSONObject decodes one JSON object, keeping key order and the exact text of numbers.
func decodeJSONObject(text string) (*object, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	v, err := decodeJSONValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("unexpected text after the JSON object in %q", text)
	}
	o, ok := v.(*object)
	if !ok {
		return nil, fmt.Errorf("%q is not a JSON object", text)
	}
	return o, nil
}

func decodeJSONValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			o := newObject()
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key %v is not a string", kt)
				}
				if o.has(k) {
					return nil, fmt.Errorf("duplicate key %q", k)
				}
				v, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				o.set(k, v)
			}
			_, err := dec.Token() // '}'
			return o, err
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeJSONValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			_, err := dec.Token() // ']'
			return list, err
		default:
			return nil, fmt.Errorf("unexpected %q", tok)
		}
	default: // string, json.Number, bool, nil
		return tok, nil
	}
}

// yamlValue converts a YAML node into the generator's JSON values (*object, []any, string, bool, int, float64, nil).
func yamlValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias)
	case yaml.MappingNode:
		o := newObject()
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag == "!!merge" {
				return nil, fmt.Errorf("line %d: key %q: %w", k.Line, k.Value, ErrUnsupportedKey)
			}
			val, err := yamlValue(v)
			if err != nil {
				return nil, err
			}
			o.set(k.Value, val)
		}
		return o, nil
	case yaml.SequenceNode:
		list := []any{}
		for _, item := range n.Content {
			val, err := yamlValue(item)
			if err != nil {
				return nil, err
			}
			list = append(list, val)
		}
		return list, nil
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, fmt.Errorf("line %d: decode %q: %w", n.Line, n.Value, err)
		}
		switch v := v.(type) {
		case nil, bool, string, int, float64:
			return v, nil
		case time.Time:
			// Helm reads values through JSON, where a timestamp is a string.
			return n.Value, nil
		default:
			return nil, fmt.Errorf("line %d: unsupported YAML scalar %q of type %T", n.Line, n.Value, v)
		}
	default:
		return nil, fmt.Errorf("line %d: unsupported YAML node kind %d", n.Line, n.Kind)
	}
}

// jsonType names the JSON Schema type of a generator value.
func jsonType(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return "string", true
	case bool:
		return "boolean", true
	case int, int64, uint64:
		return "integer", true
	case float64:
		if v == math.Trunc(v) && !math.IsInf(v, 0) {
			return "integer", true
		}
		return "number", true
	case json.Number:
		if _, err := v.Int64(); err == nil {
			return "integer", true
		}
		return "number", true
	case []any:
		return "array", true
	case *object:
		return "object", true
	default:
		return "", false
	}
}

// marshalJSON writes v as JSON: indented by indent per level, or compact when indent is empty. HTML characters are
// not escaped, so descriptions such as `<clusterIP>:443` stay readable.
func marshalJSON(v any, indent string) ([]byte, error) {
	var compact bytes.Buffer
	enc := json.NewEncoder(&compact)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(compact.Bytes(), []byte("\n"))
	if indent == "" {
		return out, nil
	}
	var b bytes.Buffer
	if err := json.Indent(&b, out, "", indent); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// MarshalJSON writes the object's keys in order.
func (o *object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		key, err := marshalJSON(k, "")
		if err != nil {
			return nil, err
		}
		val, err := marshalJSON(o.vals[k], "")
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		b.Write(key)
		b.WriteByte(':')
		b.Write(val)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
