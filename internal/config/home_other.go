//go:build !unix

package config

// ownerNames has no owners to name here.
type ownerNames struct{}

func newOwnerNames() *ownerNames { return &ownerNames{} }

func (*ownerNames) of(string) (owner, group string) { return "", "" }
