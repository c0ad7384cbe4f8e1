//go:build !linux

package main

import "errors"

func vethTransport(string, []string) (*transport, error) {
	return nil, errors.New("network namespaces need Linux")
}
