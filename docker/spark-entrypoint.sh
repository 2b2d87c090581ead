#!/bin/bash
# Entrypoint of the dwlrec Spark image (docker/Dockerfile.spark). Spark's Kubernetes backend
# starts its pods with no command, only arguments, so the image decides what they mean:
#   driver ARGS...  the driver pod: spark-submit ARGS in client mode (the operator passes
#                   --properties-file, --class and the main file), bound to the pod's address
#   executor        an executor pod: the executor backend, told where the driver is by the
#                   SPARK_* variables the driver puts in the pod
#   anything else   run as given (kfp and `docker run IMAGE python3 ...`)
set -euo pipefail

classpath="${SPARK_HOME}/jars/*"
if [[ -n "${SPARK_EXTRA_CLASSPATH:-}" ]]; then classpath="${classpath}:${SPARK_EXTRA_CLASSPATH}"; fi
if [[ -n "${SPARK_CONF_DIR:-}" ]]; then classpath="${SPARK_CONF_DIR}:${classpath}"; fi

run() {  # under tini when present: signals reach the JVM, zombies are reaped
  if command -v tini >/dev/null 2>&1; then exec tini -s -- "$@"; else exec "$@"; fi
}

case "${1:-}" in
  driver)
    shift
    run "${SPARK_HOME}/bin/spark-submit" \
      --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:-$(hostname -i | cut -d' ' -f1)}" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    # JVM options the driver passes one per variable: SPARK_JAVA_OPT_0, SPARK_JAVA_OPT_1, ...
    java_opts=()
    while IFS= read -r name; do java_opts+=("${!name}"); done \
      < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n)
    run java "${java_opts[@]}" \
      "-Xms${SPARK_EXECUTOR_MEMORY}" "-Xmx${SPARK_EXECUTOR_MEMORY}" \
      -cp "${classpath}${SPARK_DIST_CLASSPATH:+:$SPARK_DIST_CLASSPATH}" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "${SPARK_DRIVER_URL}" --executor-id "${SPARK_EXECUTOR_ID}" \
      --cores "${SPARK_EXECUTOR_CORES}" --app-id "${SPARK_APPLICATION_ID}" \
      --hostname "${SPARK_EXECUTOR_POD_IP}" --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
      --podName "${SPARK_EXECUTOR_POD_NAME}"
    ;;
  *)
    run "$@"
    ;;
esac
