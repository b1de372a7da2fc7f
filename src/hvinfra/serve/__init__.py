"""hvinfra serve: a job API and a web page over the generation workers."""
