module github.com/goflame/goflame/bench

go 1.26.0

replace github.com/goflame/goflame => ../

require (
	github.com/goflame/goflame v0.0.0-00010101000000-000000000000
	github.com/jackc/puddle/v2 v2.2.3
	github.com/stretchr/testify v1.12.1
	go.uber.org/goleak v1.3.0
	golang.org/x/sync v0.25.0
)

require go.yaml.in/yaml/v3 v3.0.5 // indirect
