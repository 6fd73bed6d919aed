// Package english writes the small pieces of English that the product's messages share, so that every message
// reads alike.
package english

import "strings"

// List joins items as a sentence lists them: "a", "a and b", "a, b and c"; "" for none.
func List(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
