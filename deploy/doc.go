// Package deploy holds only tests: they parse the deployment descriptions
// at the repository root (dapr.yaml, docker-compose.yml, tye.yaml, k8s/,
// components/, dapr/) and check that they describe the same six apps with
// the same app ids, ports and Dapr components. Nothing imports it, and it
// stays out of go.work (see README.md).
package deploy
