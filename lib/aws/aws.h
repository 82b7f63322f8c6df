/*
 * What every AWS call of bcdad shares: building a signed request
 * (SigV4, see sigv4.h), endpoints, and reading XML and JSON error bodies.
 * The protocol modules (s3, healthlake, sns, secretsmanager) sit on top.
 */
#ifndef BCDAD_AWS_H
#define BCDAD_AWS_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "util/http.h"
#include "sigv4.h"

#define AWS_EMPTY_SHA256 \
	"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct aws_call {
	const char	*method;
	const char	*base;		/* scheme://host[:port], no path */
	const char	*path;		/* as sent: already URI-encoded */
	const char	*query;		/* as sent, without '?', or NULL */
	const char	*service;	/* signing name: "s3", "sns", ... */
	const char	*region;
	int		 s3;		/* S3's signing rules and headers */
	/* The body: from memory, or len bytes of fd from off (fd >= 0). */
	const void	*body;
	size_t		 body_len;
	int		 fd;
	off_t		 off;
	/* Lowercase hex SHA-256 of the body; computed for memory bodies. */
	const char	*payload_sha256;
	/* Further headers to send and sign, "Name: value". */
	const char	*const *headers;
	size_t		 nheaders;
};

/*
 * The base URL of a service: the configured endpoint without a trailing
 * '/', or https://<service>.<region>.amazonaws.com (.com.cn in China).
 */
char		*aws_endpoint(const char *configured, const char *service,
		    const char *region);
/* The domain of region's endpoints: amazonaws.com, amazonaws.com.cn. */
const char	*aws_domain(const char *region);

/*
 * A JSON-protocol call (HealthLake: version "1.0", Secrets Manager: "1.1"):
 * POST / with Content-Type application/x-amz-json-<version>, X-Amz-Target
 * target and body (consumed), signed for service at the endpoint (see
 * aws_endpoint).  NULL with errno set on bad input or out of memory.
 */
struct http_req	*aws_json_request(const char *endpoint, const char *service,
		    const char *region, const char *version, const char *target,
		    json_t *body, const struct aws_creds *, time_t now);

/*
 * Builds the request, signed with creds at now.  Returns NULL on
 * out-of-memory or a signing error.
 */
struct http_req	*aws_request(const struct aws_call *, const struct aws_creds *,
		    time_t now);

/* One element to capture from an XML body: the first with this name. */
struct aws_xml_field {
	const char	*name;
	char		*out;
	size_t		 outlen;
};

/*
 * Parses an XML body with expat, filling each field with the text of the
 * first element of that (local) name, and root with the root element's
 * name.  Returns 0, or -EBADMSG if the body is not well-formed XML.
 */
int		 aws_xml(const char *body, size_t len, struct aws_xml_field *,
		    size_t nfields, char *root, size_t rootlen);

/*
 * The same for a list: for each element named record, its fields (the
 * first of each name inside it) are filled and cb is called; a non-zero
 * return stops the walk and is returned.
 */
int		 aws_xml_each(const char *body, size_t len, const char *record,
		    struct aws_xml_field *, size_t nfields,
		    int (*cb)(const struct aws_xml_field *, void *),
		    void *arg);

/* What an AWS error answer says: code and message, from XML or JSON. */
struct aws_error {
	char		 code[128];
	char		 message[512];
};

void		 aws_parse_error(const struct http_resp *, struct aws_error *);
/* Worth retrying: 5xx, throttling and timeout codes, connection errors. */
int		 aws_retryable(const struct http_resp *, const struct aws_error *);

#endif
