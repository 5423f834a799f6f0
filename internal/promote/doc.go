// Package promote copies a proxy from one environment into another
// environment's files (API7's publish-to-group): the same API, promoted
// test → uat → prod, with the upstream of the target environment. It edits
// files only after the whole directory, as it would be, validates; it never
// touches the running process, which picks the change up like any other.
package promote
