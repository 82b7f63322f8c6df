/*
 * Credentials from the network: the JSON document of IMDS (the instance
 * role, strict) and of ECS (container credentials, Token and Expiration
 * optional), and STS's AssumeRoleWithWebIdentity XML for web identity.
 * The first byte picks the parser and, for STS, the HTTP status.
 */
#include "aws/awscreds_int.h"
#include "fuzz.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct awscreds *ac;
	struct http_resp r;
	char *s;
	int rc = 0;

	if (size < 1 || (s = fuzz_str(data + 1, size - 1)) == NULL)
		return 0;
	if ((ac = awscreds_new(NULL, NULL, NULL)) == NULL) {
		free(s);
		return 0;
	}
	switch (data[0] % 3) {
	case 0:
		rc = ac_creds_from_json(ac, "IMDS", s, 1);
		if (rc == 0 && ac->fetched.session_token == NULL)
			abort();
		break;
	case 1:
		rc = ac_creds_from_json(ac, "ECS", s, 0);
		break;
	case 2:
		if ((ac->role_arn = strdup("arn:aws:iam::1:role/r")) == NULL)
			goto out;
		r = fuzz_resp(data[0] & 0x80 ? 400 : 200, s, size - 1);
		rc = ac_creds_from_sts(ac, "https://sts.amazonaws.com/", &r);
		if (rc == 0 && (r.status != 200 ||
		    ac->fetched.session_token == NULL))
			abort();
		break;
	}
	/* Success fills the credentials; failure says why. */
	if (rc == 0 ? ac->fetched.access_key_id == NULL ||
	    ac->fetched.secret_access_key == NULL : ac->why[0] == '\0')
		abort();
out:
	awscreds_free(ac);
	free(s);
	return 0;
}
