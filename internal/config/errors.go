package config

import (
	"fmt"
	"strings"
)

// Error is one problem found in the configuration: where, which object,
// which field, and what is wrong.
type Error struct {
	Pos    Pos    `json:"pos"`
	Object string `json:"object,omitempty"` // `proxy "user-service"`, `server`; "" when the file itself is at fault
	Field  string `json:"field,omitempty"`  // "base_path", "nodes[1].url"; "" when the object as a whole is at fault
	Msg    string `json:"message"`
}

// Error renders "file:line: object: field: message".
func (e Error) Error() string {
	return e.Pos.String() + ": " + e.detail()
}

// Warning renders a warning the way compilers do, "file:line: warning:
// object: field: message", so editors and grep find it like an error.
func (e Error) Warning() string {
	return e.Pos.String() + ": warning: " + e.detail()
}

// detail is "object: field: message" without the parts that are empty.
func (e Error) detail() string {
	var b strings.Builder
	if e.Object != "" {
		b.WriteString(e.Object)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem of one load, in file and line order.
type Errors []Error

// Error joins the problems one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// objectName renders how messages name an object: kind "name".
func objectName(kind, name string) string {
	return fmt.Sprintf("%s %q", kind, name)
}
