#!/bin/sh
# Turn schema/NNN-*.sql into a C table of migrations, in file order.
# The number in each name is the user_version the migration leaves behind.
set -eu
echo '/* Generated from the schema directory by tools/embed-schema.sh. Do not edit. */'
echo '#include "store/store.h"'
echo 'const struct store_migration store_migrations[] = {'
for f in "$@"; do
	base=$(basename "$f" .sql)
	num=$(echo "$base" | sed 's/^0*\([0-9][0-9]*\)-.*/\1/')
	printf '\t{ %s, "%s",\n' "$num" "$base"
	sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/\t  "/' -e 's/$/\\n"/' "$f"
	printf '\t},\n'
done
echo '};'
echo "const int store_nmigrations = $#;"
