// Package drivers defines the capability interfaces a board is built from
// (power, console, storage, network) and the registry of drivers by name.
//
// It follows database/sql: a driver package registers itself in init() with
// Register, the engine only ever looks drivers up by name, and programs opt
// in to a driver with a blank import. A driver implements Device, whose
// Capabilities method says which capabilities the configured device serves;
// each is a small interface (Power, Console, Storage, Network) the device
// implements. Extra abilities (reading the power state, a native power
// cycle, a reset line, writing an image itself) are optional interfaces
// with documented fallbacks.
//
// # Writing a driver
//
// A driver is one package: under drivers/ in this repository, or in a
// lab's own module, compiled into a jsplan built like cmd/jsplan (see
// plans/examples/custom-build). Example (Example_driver) is a complete
// one: a GPIO line switching a board's supply.
//
//  1. The configuration is the exported fields of a struct, with yaml tags
//     in kebab-case. The engine decodes a board's `drivers: {NAME: {...}}`
//     entry into a new value from Info.New, strictly: an unknown key is an
//     error at its line and column.
//
//  2. Register it in init() with an Info: Name is the key under a board's
//     drivers:, Summary one line for `jsplan boards drivers` and the
//     schema, Schema the JSON Schema of the configuration. Write it with
//     package schema's builders (schema.Object rejects unknown keys;
//     schema.Duration, schema.WithDefault and schema.NonEmpty describe
//     values). The schema a jsplan validates with, and prints with `jsplan
//     schema`, is generated in the process from what is registered, so the
//     new driver's configuration is checked like a stock one's with nothing
//     else to do. Discover, when set, lists devices attached to this host
//     for `jsplan boards discover`.
//
//  3. Defaults and checks: implement Defaulter to fill in defaults after
//     decoding (the Go constants the schema also declares) and Validator to
//     check what the schema cannot; return a *FieldError (ErrField) so an
//     error points at its key. Both run in `jsplan validate`, without
//     touching hardware.
//
//  4. Capabilities lists what the configured device serves, the one
//     statement of it: the engine assigns each capability of a board to the
//     driver whose device lists it (a board names one, e.g. `power: relay`,
//     when two do), the remote agent reports the result, and
//     CheckCapabilities rejects a device that lists a capability whose
//     interface it does not implement. It may depend on the configuration:
//     the sim board serves network only with an ssh: endpoint.
//
//  5. Open receives the board's Env (its name, a state directory that
//     survives runs, the inventory's directory for relative paths, a run-log
//     function, Secret to mask a value everywhere) before any capability is
//     used; Close releases the device after the run, also a failed one. The
//     capability methods take the step's context: honour its cancellation.
//     Errors from the hardware are infrastructure errors: return an *Error
//     (Errorf), which jsplan reports with exit status 3, never as a failure
//     of the software under test.
//
//  6. Make it available: in this repository, add the package to
//     drivers/all and run `make schema` (the checked-in schema is the stock
//     binary's, for editors); test its schema with
//     drivers/internal/schematest.Check. Outside it, blank-import the
//     package in your own main next to drivers/all and steps, and call
//     cmd.Main.
//
// Step types are written the same way: see package steps.
package drivers
