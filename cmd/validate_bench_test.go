package cmd

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkValidate500 runs `jsplan validate` in-process on 500 generated
// plans (internal/bench/validate-bench.sh times the whole process against ajv).
func BenchmarkValidate500(b *testing.B) {
	dir := b.TempDir()
	for i := 0; i < 500; i++ {
		text := fmt.Sprintf(`apiVersion: jsplan.dev/v1
kind: Plan
name: plan-%d
params:
  image: {type: string, default: image.img}
  password: {type: string, secret: true, default: bench-password}
timeout: 30m
steps:
  - power: off
  - flash: {image: "${{ params.image }}", verify: true}
  - wait-for-login: {username: root, password: "${{ params.password }}"}
  - run: {command: "uname -a", expect-output: "Linux"}
  - console: {send: "<ENTER>", expect: ["# $", "login:"]}
  - collect: {paths: [/var/log/messages], to: logs}
    retry: {attempts: 2, delay: 5s}
finally:
  - power: off
`, i)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("p%d.yaml", i)), []byte(text), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if code := run([]string{"jsplan", "validate", "-q", dir}, io.Discard, io.Discard); code != 0 {
			b.Fatalf("exit %d", code)
		}
	}
}
