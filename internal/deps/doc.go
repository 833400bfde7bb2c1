// Package deps holds deps.sh, the one place that maps the commands jsplan's demo,
// tests and benchmarks use to the Debian packages that provide them, and the test
// that proves the install would succeed on a fresh machine of this machine's shape.
package deps
