package deploy

import (
	"slices"
	"strings"
	"testing"
)

// daprMetadata are the metadata names Dapr 1.14 documents for the
// component types of the Kafka profiles, copied from components-contrib
// v1.14.0-rc.6 (the version daprd 1.14.0 builds with): pubsub/kafka,
// state/mongodb and state/postgresql/v2 metadata.yaml, authentication
// profiles included. daprd decodes metadata with mapstructure, which
// matches names regardless of case (kafka's code reads "clientId", its
// metadata.yaml says "clientID"), so the names compare that way.
var daprMetadata = map[string]struct{ known, required []string }{
	"pubsub.kafka": {
		known: []string{"authType", "awsAccessKey", "awsIamRoleArn", "awsRegion", "awsSecretKey", "awsSessionToken",
			"awsStsSessionName", "brokers", "caCert", "channelBufferSize", "clientCert", "clientConnectionKeepAliveInterval",
			"clientConnectionTopicMetadataRefreshInterval", "clientID", "clientKey", "consumeRetryEnabled",
			"consumeRetryInterval", "consumerFetchDefault", "consumerFetchMin", "consumerGroup", "disableTls",
			"heartbeatInterval", "initialOffset", "maxMessageBytes", "oidcClientID", "oidcClientSecret", "oidcExtensions",
			"oidcScopes", "oidcTokenEndpoint", "saslMechanism", "saslPassword", "saslUsername", "schemaCachingEnabled",
			"schemaLatestVersionCacheTTL", "schemaRegistryAPIKey", "schemaRegistryAPISecret", "schemaRegistryURL",
			"sessionTimeout", "skipVerify", "version"},
		required: []string{"brokers", "authType"},
	},
	"state.mongodb": {
		known: []string{"collectionName", "connectionString", "databaseName", "host", "operationTimeout", "params",
			"password", "readconcern", "server", "username", "writeconcern"},
	},
	"state.postgresql/v2": {
		known: []string{"cleanupInterval", "connectionMaxIdleTime", "connectionString", "maxConns", "metadataTableName",
			"queryExecMode", "tablePrefix", "timeout", "useAzureAD", "useAWSIAM", "awsRegion", "awsAccessKey", "awsSecretKey"},
		required: []string{"connectionString"},
	},
}

// runtimeMetadata are names daprd itself reads from every component of a
// kind (pkg/scopes for pub/sub topic scopes; the consumer id).
var runtimeMetadata = map[string][]string{
	"pubsub.": {"allowedTopics", "protectedTopics", "publishingScopes", "subscriptionScopes", "consumerID"},
	"state.":  {"actorStateStore", "keyPrefix"},
}

// TestKafkaAndStoreComponentsUseDaprsMetadata: every metadata item of a
// Kafka, MongoDB or PostgreSQL v2 component, in every profile and
// variant, is a name Dapr 1.14 reads, and the required ones are set. A
// misspelt name is ignored by daprd without a word, so a profile that
// has never run (kafka-mongodb) would carry it unseen.
func TestKafkaAndStoreComponentsUseDaprsMetadata(t *testing.T) {
	checked := 0
	for _, dir := range profileDirs(t) {
		for name, c := range loadComponents(t, dir) {
			key := c.Spec.Type
			if c.Spec.Type == "state.postgresql" {
				key += "/" + c.Spec.Version
			}
			spec, ok := daprMetadata[key]
			if !ok {
				continue
			}
			checked++
			known := slices.Clone(spec.known)
			for prefix, names := range runtimeMetadata {
				if strings.HasPrefix(c.Spec.Type, prefix) {
					known = append(known, names...)
				}
			}
			for _, m := range c.Spec.Metadata {
				if !containsFold(known, m.Name) {
					t.Errorf("%s: %s (%s) sets %q, which Dapr 1.14 does not read", dir, name, key, m.Name)
				}
			}
			for _, req := range spec.required {
				if _, ok := c.meta(req); !ok {
					t.Errorf("%s: %s (%s) lacks %q, which Dapr 1.14 requires", dir, name, key, req)
				}
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked %d components: the Kafka profiles are missing", checked)
	}
}

func containsFold(names []string, name string) bool {
	for _, n := range names {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}
