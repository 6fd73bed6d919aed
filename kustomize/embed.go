// Package kustomize holds the kustomize components and example overlays users apply with the post-renderer,
// and embeds the generated trust-distribution component the post-renderer's --trust-distribution=on adds.
package kustomize

import "embed"

// TrustAgentFile is the generated trust agent, with placeholders, in Components.
const TrustAgentFile = "components/trust-distribution/on/trust-agent.yaml"

// Components holds the trust-distribution component.
//
//go:embed components/trust-distribution/on/trust-agent.yaml
var Components embed.FS
