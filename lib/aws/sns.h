/*
 * Amazon SNS Publish, the one SNS call bcdad makes (protocol query,
 * API version 2010-03-31, reference/aws.md 1.3): a form-encoded POST /
 * signed with SigV4 (aws.h), and the reading of its XML answer.
 */
#ifndef BCDAD_SNS_H
#define BCDAD_SNS_H

#include <stddef.h>
#include <time.h>

#include "aws.h"

#define SNS_MESSAGE_MAX		262144	/* bytes, attributes included */
#define SNS_SUBJECT_MAX		99	/* characters: "less than 100" */
#define SNS_ATTRS_MAX		10
#define SNS_ATTR_NAME_MAX	256

/* A message attribute, sent with DataType String. */
struct sns_attr {
	const char	*name;
	const char	*value;
};

/*
 * 0 if SNS would take s as a Subject: UTF-8, 1 to 99 characters, no
 * control characters or line breaks.  -EINVAL otherwise.
 */
int		 sns_check_subject(const char *s);
/*
 * 0 if SNS would take s as a Message: not empty, at most 262,144 bytes,
 * UTF-8 with only the characters XML allows (tab, CR and LF are fine).
 * -EINVAL otherwise.
 */
int		 sns_check_message(const char *s);
/*
 * 0 if SNS would take the attribute: a name of 1 to 256 characters from
 * [A-Za-z0-9_.-], without a leading, trailing or doubled '.', not
 * beginning with "AWS." or "Amazon."; a value that passes
 * sns_check_message.  -EINVAL otherwise.
 */
int		 sns_check_attr(const struct sns_attr *);

/*
 * For a FIFO topic (its name ends in .fifo): SNS drops a message whose
 * dedup_id it saw in the last 5 minutes; group_id is required.  Each is
 * 1 to 128 characters of ASCII letters, digits and punctuation.
 */
struct sns_fifo {
	const char	*dedup_id;	/* NULL: content-based (topic's) */
	const char	*group_id;
};

/* True for the ARN of a FIFO topic. */
int		 sns_topic_fifo(const char *topic_arn);

/*
 * A signed Publish of message to topic_arn, to the endpoint
 * (scheme://host[:port]) or, when endpoint is NULL, to AWS's
 * https://sns.<region>.amazonaws.com.  subject may be NULL (none).  The
 * body is form-encoded exactly as botocore encodes it (space as '+',
 * RFC 3986 unreserved characters kept, everything else %XX).  fifo is
 * NULL for a standard topic.  Returns
 * NULL with errno EINVAL when any check above fails, when there are more
 * than 10 attributes or two with one name, or when message and
 * attributes exceed 262,144 bytes together; ENOMEM when out of memory.
 */
struct http_req	*sns_publish(const char *endpoint, const char *region,
		    const char *topic_arn, const char *subject,
		    const char *message, const struct sns_attr *attrs,
		    size_t nattrs, const struct sns_fifo *fifo,
		    const struct aws_creds *, time_t now);

/*
 * A signed GetTopicAttributes of topic_arn (bcdad doctor: the topic
 * exists and may be read); the answer is a success or an AWS error.
 */
struct http_req	*sns_get_topic_attributes(const char *endpoint,
		    const char *region, const char *topic_arn,
		    const struct aws_creds *, time_t now);

/*
 * A Publish answer: <PublishResponse><PublishResult><MessageId>.  Returns
 * 0 and the MessageId; -EIO for an AWS error (an <ErrorResponse>, read
 * it with aws_parse_error: AuthorizationError, NotFound, ...) or a failed
 * transfer; -EBADMSG for a 2xx answer without a MessageId.
 */
int		 sns_parse_publish(const struct http_resp *,
		    char message_id[128]);

#endif
