/*
 * AWS's answers: S3 and STS XML (errors, upload ids, upload lists), JSON
 * errors, HealthLake, Secrets Manager, SNS, and credential times; the
 * first byte picks the parser and the HTTP status.
 */
#include "aws/aws.h"
#include "aws/awscreds.h"
#include "aws/healthlake.h"
#include "aws/s3.h"
#include "aws/secretsmanager.h"
#include "aws/sns.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hl_job_status js;
	struct aws_error e;
	struct http_resp r;
	char *s, *p, *q, **ids, st[32], mid[128];
	int64_t t;
	int n, i;

	if (size < 1 || (s = fuzz_str(data + 1, size - 1)) == NULL)
		return 0;
	r = fuzz_resp(data[0] & 0x80 ? 400 : 200, s, size - 1);
	switch (data[0] % 8) {
	case 0:
		s3_check(&r, &e);
		aws_parse_error(&r, &e);
		aws_retryable(&r, &e);
		break;
	case 1:
		free(s3_upload_id(&r));
		break;
	case 2:
		if ((n = s3_upload_ids(&r, "a/b.ndjson", &ids)) > 0) {
			for (i = 0; i < n; i++)
				free(ids[i]);
			free(ids);
		}
		break;
	case 3:
		p = NULL;
		if (hl_parse_start(&r, &p, st) == 0)
			free(p);
		break;
	case 4:
		hl_parse_describe(&r, &js);
		hl_parse_datastore(&r, st);
		break;
	case 5:
		p = q = NULL;
		if (sm_parse_bcda_secret(&r, &p, &q) == 0) {
			free(p);
			free(q);
		}
		sm_parse_created(&r);
		break;
	case 6:
		sns_parse_publish(&r, mid);
		break;
	case 7:
		awscreds_parse_time(s, &t);
		break;
	}
	free(s);
	return 0;
}
