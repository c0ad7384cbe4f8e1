//go:build !linux

package main

import "errors"

func vethTransport() (*transport, error) {
	return nil, errors.New("network namespaces need Linux")
}
