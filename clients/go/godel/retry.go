package godel

import (
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/godel-ai/godel/gen/go/godel/v1" // registers the godel.v1 descriptors read below
)

// retryable says whether a unary method may be sent again after UNAVAILABLE: reads (Get*,
// List*, Query*) and calls whose request carries a request_id (creates are idempotent by it).
func retryable(m protoreflect.MethodDescriptor) bool {
	if m.IsStreamingClient() || m.IsStreamingServer() {
		return false
	}
	name := string(m.Name())
	for _, prefix := range []string{"Get", "List", "Query"} {
		if strings.HasPrefix(name, prefix) {
			return true
		}
	}
	return m.Input().Fields().ByName("request_id") != nil
}

// serviceConfig is the gRPC service config with a retry policy (UNAVAILABLE, 5 attempts,
// jittered exponential backoff) for every retryable method of godel.v1, read from the
// descriptors of the generated code.
func serviceConfig() string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	var names []name
	protoregistry.GlobalFiles.RangeFilesByPackage("godel.v1", func(f protoreflect.FileDescriptor) bool {
		for i := 0; i < f.Services().Len(); i++ {
			s := f.Services().Get(i)
			for j := 0; j < s.Methods().Len(); j++ {
				if m := s.Methods().Get(j); retryable(m) {
					names = append(names, name{string(s.FullName()), string(m.Name())})
				}
			}
		}
		return true
	})
	config := map[string]any{"methodConfig": []any{map[string]any{
		"name": names,
		"retryPolicy": map[string]any{
			"maxAttempts":          5,
			"initialBackoff":       "0.1s",
			"maxBackoff":           "2s",
			"backoffMultiplier":    2.0,
			"retryableStatusCodes": []string{"UNAVAILABLE"},
		},
	}}}
	out, _ := json.Marshal(config) // plain maps and strings: cannot fail
	return string(out)
}
