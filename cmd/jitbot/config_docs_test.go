package main

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestEveryVariableIsDocumented: docs/configuration.md names every environment variable Config reads, so
// the reference cannot fall behind the code.
func TestEveryVariableIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(Config{})
	n := 0
	for i := 0; i < typ.NumField(); i++ {
		name := typ.Field(i).Tag.Get("envconfig")
		if name == "" {
			continue
		}
		n++
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/configuration.md does not document %s (field %s)", name, typ.Field(i).Name)
		}
	}
	if n < 10 {
		t.Fatalf("found only %d variables in Config", n)
	}
}
