/*
 * Amazon SNS Publish.  See sns.h and reference/aws.md 1.3 and 1.6.
 *
 * The query protocol: Action and Version, then the input's members, as
 * form fields in one application/x-www-form-urlencoded body.  botocore
 * hands its fields to Python's urlencode, which writes a space as '+'
 * and keeps only A-Z a-z 0-9 - _ . ~; the body here is byte for byte the
 * same (tests/unit/test_awsapi.c checks it against botocore).
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sns.h"

/*
 * Decodes one UTF-8 character at s (n bytes left) into *cp and returns
 * its length, or 0 if it is malformed: truncated, overlong, a surrogate or
 * beyond U+10FFFF.
 */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return len;
}

/* The characters XML 1.0 allows, which is what SNS accepts in text. */
static int
xml_char(uint32_t c)
{
	return c == 0x9 || c == 0xa || c == 0xd || (c >= 0x20 && c <= 0xd7ff) ||
	    (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);
}

int
sns_check_subject(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, left, chars = 0;
	uint32_t c;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	for (left = strlen(s); left > 0; p += n, left -= n) {
		if ((n = utf8_next(p, left, &c)) == 0)
			return -EINVAL;
		/* C0, DEL, C1, and the Unicode line and paragraph breaks. */
		if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == 0x2028 ||
		    c == 0x2029 || !xml_char(c))
			return -EINVAL;
		if (++chars > SNS_SUBJECT_MAX)
			return -EINVAL;
	}
	return 0;
}

int
sns_check_message(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n, left;
	uint32_t c;

	if (s == NULL || *s == '\0' || strlen(s) > SNS_MESSAGE_MAX)
		return -EINVAL;
	for (left = strlen(s); left > 0; p += n, left -= n)
		if ((n = utf8_next(p, left, &c)) == 0 || !xml_char(c))
			return -EINVAL;
	return 0;
}

int
sns_check_attr(const struct sns_attr *a)
{
	const char *p;
	size_t len;

	if (a->name == NULL || (len = strlen(a->name)) == 0 ||
	    len > SNS_ATTR_NAME_MAX || a->name[0] == '.' ||
	    a->name[len - 1] == '.' || strstr(a->name, "..") != NULL ||
	    strncasecmp(a->name, "AWS.", 4) == 0 ||
	    strncasecmp(a->name, "Amazon.", 7) == 0)
		return -EINVAL;
	for (p = a->name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
		    *p == '.'))
			return -EINVAL;
	return sns_check_message(a->value);
}

/* Appends "&name=value" (no '&' first), value form-encoded. */
static void
field(FILE *f, const char *name, const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p;

	if (ftell(f) > 0)
		fputc('&', f);
	fputs(name, f);
	fputc('=', f);
	for (p = (const unsigned char *)value; *p; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
		    *p == '.' || *p == '~')
			fputc(*p, f);
		else if (*p == ' ')
			fputc('+', f);
		else
			fprintf(f, "%%%c%c", hex[*p >> 4], hex[*p & 15]);
	}
}

int
sns_topic_fifo(const char *topic_arn)
{
	size_t n = topic_arn ? strlen(topic_arn) : 0;

	return n > 5 && strcmp(topic_arn + n - 5, ".fifo") == 0;
}

/*
 * A MessageDeduplicationId or MessageGroupId: 1 to 128 characters,
 * alphanumeric or punctuation.  NULL passes (none).
 */
static int
fifo_id_ok(const char *s)
{
	size_t n = 0;

	if (s == NULL)
		return 1;
	for (; *s != '\0'; s++, n++)
		if (*s < '!' || *s > '~')
			return 0;
	return n >= 1 && n <= 128;
}

/* Every check of sns_publish's inputs; 0 or -EINVAL. */
static int
publish_ok(const char *topic_arn, const char *subject, const char *message,
    const struct sns_attr *attrs, size_t nattrs, const struct sns_fifo *fifo)
{
	size_t i, j, total;

	if (fifo != NULL && (!fifo_id_ok(fifo->dedup_id) ||
	    !fifo_id_ok(fifo->group_id) || fifo->group_id == NULL))
		return -EINVAL;
	if (topic_arn == NULL || *topic_arn == '\0' ||
	    (subject != NULL && sns_check_subject(subject) != 0) ||
	    sns_check_message(message) != 0 || nattrs > SNS_ATTRS_MAX)
		return -EINVAL;
	/* SNS counts the attributes' names, types and values in the size. */
	total = strlen(message);
	for (i = 0; i < nattrs; i++) {
		if (sns_check_attr(&attrs[i]) != 0)
			return -EINVAL;
		for (j = 0; j < i; j++)
			if (strcmp(attrs[i].name, attrs[j].name) == 0)
				return -EINVAL;
		total += strlen(attrs[i].name) + strlen("String") +
		    strlen(attrs[i].value);
	}
	return total <= SNS_MESSAGE_MAX ? 0 : -EINVAL;
}

/* A signed form-encoded POST / of body (the Query protocol). */
static struct http_req *
form_call(const char *base, const char *region, const char *body,
    size_t len, const struct aws_creds *creds, time_t now)
{
	struct aws_call c;
	struct http_req *r;

	memset(&c, 0, sizeof(c));
	c.method = "POST";
	c.base = base;
	c.path = "/";
	c.service = "sns";
	c.region = region;
	c.body = body;
	c.body_len = len;
	c.fd = -1;
	c.headers = (const char *const[]){
	    "Content-Type: application/x-www-form-urlencoded; charset=utf-8" };
	c.nheaders = 1;
	if ((r = aws_request(&c, creds, now)) == NULL)
		errno = ENOMEM;
	return r;
}

struct http_req *
sns_publish(const char *endpoint, const char *region, const char *topic_arn,
    const char *subject, const char *message, const struct sns_attr *attrs,
    size_t nattrs, const struct sns_fifo *fifo, const struct aws_creds *creds,
    time_t now)
{
	struct http_req *r = NULL;
	char *base = NULL, *body = NULL, name[64];
	size_t len = 0, i;
	FILE *f;

	if (region == NULL || *region == '\0' ||
	    publish_ok(topic_arn, subject, message, attrs, nattrs, fifo) != 0) {
		errno = EINVAL;
		return NULL;
	}
	base = aws_endpoint(endpoint, "sns", region);
	if (base == NULL || (f = open_memstream(&body, &len)) == NULL)
		goto nomem;
	/* botocore's order: Action, Version, then the caller's members. */
	field(f, "Action", "Publish");
	field(f, "Version", "2010-03-31");
	field(f, "TopicArn", topic_arn);
	if (subject != NULL)
		field(f, "Subject", subject);
	field(f, "Message", message);
	for (i = 0; i < nattrs; i++) {
		snprintf(name, sizeof(name), "MessageAttributes.entry.%zu.Name",
		    i + 1);
		field(f, name, attrs[i].name);
		snprintf(name, sizeof(name), "MessageAttributes.entry.%zu."
		    "Value.DataType", i + 1);
		field(f, name, "String");
		snprintf(name, sizeof(name), "MessageAttributes.entry.%zu."
		    "Value.StringValue", i + 1);
		field(f, name, attrs[i].value);
	}
	if (fifo != NULL && fifo->dedup_id != NULL)
		field(f, "MessageDeduplicationId", fifo->dedup_id);
	if (fifo != NULL)
		field(f, "MessageGroupId", fifo->group_id);
	if (ferror(f) | fclose(f))
		goto nomem;
	r = form_call(base, region, body, len, creds, now);
	goto out;
nomem:
	errno = ENOMEM;
out:
	free(body);
	free(base);
	return r;
}

struct http_req *
sns_get_topic_attributes(const char *endpoint, const char *region,
    const char *topic_arn, const struct aws_creds *creds, time_t now)
{
	struct http_req *r = NULL;
	char *base = NULL, *body = NULL;
	size_t len = 0;
	FILE *f;

	if (region == NULL || *region == '\0' || topic_arn == NULL) {
		errno = EINVAL;
		return NULL;
	}
	base = aws_endpoint(endpoint, "sns", region);
	if (base == NULL || (f = open_memstream(&body, &len)) == NULL) {
		errno = ENOMEM;
		goto out;
	}
	field(f, "Action", "GetTopicAttributes");
	field(f, "Version", "2010-03-31");
	field(f, "TopicArn", topic_arn);
	if (ferror(f) | fclose(f))
		errno = ENOMEM;
	else
		r = form_call(base, region, body, len, creds, now);
out:
	free(body);
	free(base);
	return r;
}

int
sns_parse_publish(const struct http_resp *resp, char message_id[128])
{
	struct aws_xml_field f = { "MessageId", message_id, 128 };
	char root[64];

	message_id[0] = '\0';
	if (resp->result != CURLE_OK || resp->status < 200 ||
	    resp->status > 299)
		return -EIO;
	if (resp->body == NULL || aws_xml(resp->body, resp->body_len, &f, 1,
	    root, sizeof(root)) != 0)
		return -EBADMSG;
	if (strcmp(root, "ErrorResponse") == 0) {
		message_id[0] = '\0';
		return -EIO;
	}
	if (strcmp(root, "PublishResponse") != 0 || message_id[0] == '\0') {
		message_id[0] = '\0';
		return -EBADMSG;
	}
	return 0;
}
