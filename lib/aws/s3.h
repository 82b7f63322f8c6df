/*
 * Amazon S3 requests bcdad sends: PutObject, the multipart upload calls
 * (and the listing of open uploads) and HeadObject, signed with SigV4 (aws.h), and the reading of their
 * answers with a real XML parser.
 */
#ifndef BCDAD_S3_H
#define BCDAD_S3_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "aws.h"

#define S3_MIN_PART	(5ull * 1024 * 1024)
#define S3_MAX_PARTS	10000

/* Where objects go. */
struct s3_loc {
	const char	*endpoint;	/* scheme://host[:port] or NULL: AWS */
	const char	*region;
	const char	*bucket;
	const char	*kms_key_id;	/* NULL: the aws/s3 managed key */
};

struct s3_part {
	int		 number;
	char		*etag;
};

/* max(8 MiB, ceil(size / 10000)): at most 10,000 parts. */
unsigned long long s3_part_size(unsigned long long size);

struct http_req	*s3_put_object(const struct s3_loc *, const char *key, int fd,
		    off_t off, size_t len, const char *sha256_hex,
		    const char *content_type, const struct aws_creds *, time_t);
struct http_req	*s3_create_multipart(const struct s3_loc *, const char *key,
		    const char *content_type, const struct aws_creds *, time_t);
struct http_req	*s3_upload_part(const struct s3_loc *, const char *key,
		    const char *upload_id, int part, int fd, off_t off,
		    size_t len, const char *sha256_hex,
		    const struct aws_creds *, time_t);
struct http_req	*s3_complete_multipart(const struct s3_loc *, const char *key,
		    const char *upload_id, const struct s3_part *, size_t n,
		    const struct aws_creds *, time_t);
struct http_req	*s3_abort_multipart(const struct s3_loc *, const char *key,
		    const char *upload_id, const struct aws_creds *, time_t);
struct http_req	*s3_head_object(const struct s3_loc *, const char *key,
		    const struct aws_creds *, time_t);
/* bcdad doctor's test object: a PUT from memory, then its DELETE. */
struct http_req	*s3_put_bytes(const struct s3_loc *, const char *key,
		    const char *body, const struct aws_creds *, time_t);
struct http_req	*s3_delete_object(const struct s3_loc *, const char *key,
		    const struct aws_creds *, time_t);

struct http_req	*s3_list_multipart(const struct s3_loc *,
		    const struct aws_creds *, time_t);
/*
 * The UploadIds of key's open uploads in a ListMultipartUploads answer:
 * their number, with *ids a malloc'd array of malloc'd strings; or a
 * negative errno (-EBADMSG: not XML).
 */
int		 s3_upload_ids(const struct http_resp *, const char *key,
		    char ***ids);

/* The UploadId of a CreateMultipartUpload answer, malloc'd, or NULL. */
char		*s3_upload_id(const struct http_resp *);

/*
 * 0 when an S3 answer is a success.  Otherwise fills e (code and message;
 * for a body-less HEAD, the status) and returns -EIO.  A 200 whose body is
 * an <Error> (CompleteMultipartUpload can do that) is a failure.
 */
int		 s3_check(const struct http_resp *, struct aws_error *e);

/*
 * A sentence for a failed S3 call: names the bucket and key, and for
 * AccessDenied the IAM action that was refused; for RequestTimeTooSkewed,
 * the clock.
 */
void		 s3_describe(const struct s3_loc *, const char *key,
		    const char *action, const struct http_resp *,
		    const struct aws_error *, char *out, size_t outlen);

#endif
