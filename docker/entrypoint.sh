#!/bin/sh
# `serve` alone (how SageMaker starts a container, and this image's default) picks the platform's
# contract from its environment; anything else is passed to `tailor` as it is.
set -eu
if [ "$#" -eq 1 ] && [ "$1" = "serve" ]; then
    if [ -n "${AIP_HTTP_PORT:-}" ]; then
        exec tailor serve "${TAILOR_MODEL:-/model}" --platform vertex
    elif [ -n "${AZUREML_MODEL_DIR:-}" ]; then
        exec tailor serve "${AZUREML_MODEL_DIR}" --platform azure
    elif [ -d /opt/ml/model ]; then
        exec tailor serve /opt/ml/model --platform sagemaker
    else
        exec tailor serve "${TAILOR_MODEL:-/model}" --host 0.0.0.0 --port "${PORT:-8000}"
    fi
fi
exec tailor "$@"
