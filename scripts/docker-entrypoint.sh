#!/bin/sh
# The images' entrypoint. Platforms such as Railway mount a volume owned by root at the data
# path (and Railway refuses images that declare VOLUME), so the container starts as root only
# long enough to hand DATA_DIR to the service user, then runs the server as that user, never
# as root. Started as another user (docker run --user), it runs the command as that user.
set -eu
run_as=${MMT_RUN_AS:-mmt}
data=${DATA_DIR:-/data}

if [ "$(id -u)" -ne 0 ]; then
  exec "$@"
fi
id "$run_as" >/dev/null 2>&1 || { echo "entrypoint: no user '$run_as' in the image" >&2; exit 1; }
mkdir -p "$data"
# Only what is not the service user's already: a restart on a large volume stays quick.
find "$data" \( ! -user "$run_as" -o ! -group "$(id -gn "$run_as")" \) -exec chown "$run_as:$(id -gn "$run_as")" {} +
chmod 0700 "$data"
exec setpriv --reuid="$run_as" --regid="$(id -gn "$run_as")" --init-groups --inh-caps=-all --bounding-set=-all -- "$@"
